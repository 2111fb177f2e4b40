import os

import jwt

SECRET_KEY = os.environ.get("JWT_SECRET", "dev-secret")


def issue(user_id):
    return jwt.encode({"sub": user_id}, SECRET_KEY, algorithm="HS256")


def issue_service(name):
    return jwt.encode({"sub": name}, "a-hard-coded-service-secret-that-is-long-enough", algorithm="HS256")
