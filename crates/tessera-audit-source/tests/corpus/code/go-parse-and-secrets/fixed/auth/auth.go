package auth

import (
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Not this: jwt.Parse(s, func(t *jwt.Token) (interface{}, error) { return []byte("secret"), nil })
var secret = []byte(os.Getenv("JWT_SECRET"))

func keyFor(token *jwt.Token) (interface{}, error) {
	return secret, nil
}

func Authenticate(r *http.Request) (*jwt.Token, error) {
	return jwt.Parse(r.Header.Get("Authorization")[7:], keyFor,
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience("orders"),
		jwt.WithIssuer("https://auth.example.com"), jwt.WithLeeway(5*time.Second))
}

func Issue(sub string) (string, error) {
	token := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	return token.SignedString(secret)
}
