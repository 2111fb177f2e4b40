import os

import jwt

SECRET_KEY = os.environ["JWT_SECRET"]


def issue(user_id):
    return jwt.encode({"sub": user_id}, SECRET_KEY, algorithm="HS256")
