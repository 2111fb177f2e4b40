import os

import jwt
from fastapi import APIRouter

router = APIRouter()
KEY = os.environ["JWT_KEY"]


@router.post("/auth/refresh")
def exchange(refresh_token: str) -> dict:
    claims = jwt.decode(refresh_token, KEY, algorithms=["HS256"], audience="api", issuer="https://auth.example.com")
    return {"access_token": jwt.encode({"sub": claims["sub"]}, KEY, algorithm="HS256")}
