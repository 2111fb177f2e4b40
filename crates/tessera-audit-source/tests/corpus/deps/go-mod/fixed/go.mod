module example.com/orders

go 1.22

require (
	github.com/golang-jwt/jwt/v5 v5.2.2
	github.com/google/uuid v1.6.0 // indirect
)

require github.com/lestrrat-go/jwx/v2 v2.0.21
