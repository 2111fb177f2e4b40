package auth

import (
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const signingSecret = "secret"

func keyFor(token *jwt.Token) (interface{}, error) {
	return []byte(signingSecret), nil
}

func Authenticate(r *http.Request) (*jwt.Token, error) {
	return jwt.Parse(r.Header.Get("Authorization")[7:], keyFor, jwt.WithLeeway(24*time.Hour))
}

func Issue(sub string) (string, error) {
	token := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	return token.SignedString([]byte("a-hard-coded-go-secret-that-is-long-enough"))
}

func Peek(s string) (*jwt.Token, error) {
	token, _, err := jwt.NewParser().ParseUnverified(s, jwt.MapClaims{})
	return token, err
}

func Lenient(s string) (*jwt.Token, error) {
	return jwt.Parse(s, func(t *jwt.Token) (interface{}, error) {
		return []byte(os.Getenv("JWT_SECRET")), nil
	}, jwt.WithoutClaimsValidation(), jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience("orders"), jwt.WithIssuer("https://auth.example.com"))
}
