package keys

import (
	"time"

	"github.com/go-jose/go-jose/v3/jwt"
	jwxjwt "github.com/lestrrat-go/jwx/v2/jwt"
)

func Peek(raw string) (map[string]any, error) {
	token, err := jwt.ParseSigned(raw)
	if err != nil {
		return nil, err
	}
	claims := map[string]any{}
	err = token.UnsafeClaimsWithoutVerification(&claims)
	return claims, err
}

func Lenient(raw []byte) (jwxjwt.Token, error) {
	return jwxjwt.Parse(raw, jwxjwt.WithVerify(false), jwxjwt.WithValidate(false), jwxjwt.WithAcceptableSkew(24*time.Hour))
}
