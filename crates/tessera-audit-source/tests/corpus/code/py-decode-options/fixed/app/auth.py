import jwt

# jwt.decode(token, key) would take the algorithm from the token.


def current_user(token, public_key):
    return jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        audience="orders",
        issuer="https://auth.example.com",
        leeway=10,
    )
