import jwt


def current_user(token, key):
    return jwt.decode(token, key)


def preview(token):
    return jwt.decode(token, options={"verify_signature": False})


def legacy(token, key):
    return jwt.decode(
        token,
        key,
        algorithms=["HS256", "RS256", "none"],
        audience="orders",
        issuer="https://auth.example.com",
        leeway=3600,
        options={"verify_exp": False},
    )
