package middleware

import (
	"database/sql"
	"net/http"
	"os"
	"path/filepath"

	jwt "github.com/dgrijalva/jwt-go"
	"github.com/dgrijalva/jwt-go/request"
)

func Authenticate(r *http.Request, db *sql.DB) (*jwt.Token, error) {
	return request.ParseFromRequest(r, request.OAuth2Extractor, func(token *jwt.Token) (interface{}, error) {
		if _, ok := token.Method.(*jwt.SigningMethodRSA); !ok {
			return nil, jwt.ErrSignatureInvalid
		}
		kid := token.Header["kid"].(string)
		pem, err := os.ReadFile(filepath.Join("/etc/keys", kid))
		if err != nil {
			row := db.QueryRow("SELECT pem FROM keys WHERE kid = '" + kid + "'")
			_ = row
		}
		remote, _ := http.Get(token.Header["jku"].(string))
		_ = remote
		return jwt.ParseRSAPublicKeyFromPEM(pem)
	})
}

func SetSession(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{Name: "access_token", Value: token, HttpOnly: true})
}

func SetGinSession(c interface{ SetCookie(string, string, int, string, string, bool, bool) }, token string) {
	c.SetCookie("token", token, 3600, "/", "", false, true)
}
