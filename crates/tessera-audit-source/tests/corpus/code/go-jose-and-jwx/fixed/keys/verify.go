package keys

import (
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/lestrrat-go/jwx/v2/jwa"
	jwxjwt "github.com/lestrrat-go/jwx/v2/jwt"
)

func Verify(raw string, key any) (jwt.Claims, error) {
	token, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return jwt.Claims{}, err
	}
	claims := jwt.Claims{}
	err = token.Claims(key, &claims)
	return claims, err
}

func Strict(raw []byte, key any) (jwxjwt.Token, error) {
	return jwxjwt.Parse(raw, jwxjwt.WithKey(jwa.ES256, key), jwxjwt.WithAcceptableSkew(5*time.Second))
}
