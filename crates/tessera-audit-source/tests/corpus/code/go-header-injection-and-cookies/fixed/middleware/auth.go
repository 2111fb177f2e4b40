package middleware

import (
	"crypto/rsa"
	"net/http"

	jwt "github.com/dgrijalva/jwt-go"
	"github.com/dgrijalva/jwt-go/request"
)

var keys = map[string]*rsa.PublicKey{}

func Authenticate(r *http.Request) (*jwt.Token, error) {
	return request.ParseFromRequest(r, request.OAuth2Extractor, func(token *jwt.Token) (interface{}, error) {
		if _, ok := token.Method.(*jwt.SigningMethodRSA); !ok {
			return nil, jwt.ErrSignatureInvalid
		}
		claims := token.Claims.(jwt.MapClaims)
		if !claims.VerifyAudience("orders", true) || !claims.VerifyIssuer("https://auth.example.com", true) {
			return nil, jwt.ErrSignatureInvalid
		}
		return keys[token.Header["kid"].(string)], nil
	})
}

func SetSession(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{Name: "access_token", Value: token, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}
