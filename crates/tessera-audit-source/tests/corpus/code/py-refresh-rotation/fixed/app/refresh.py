import os

import jwt
from fastapi import APIRouter

router = APIRouter()
KEY = os.environ["JWT_KEY"]


@router.post("/auth/refresh")
def exchange(refresh_token: str, store) -> dict:
    claims = jwt.decode(refresh_token, KEY, algorithms=["HS256"], audience="api", issuer="https://auth.example.com")
    if not store.mark_used(claims["jti"]):
        store.revoke_family(claims["sid"])
        raise PermissionError("refresh token presented twice")
    return {
        "access_token": jwt.encode({"sub": claims["sub"]}, KEY, algorithm="HS256"),
        "refresh_token": jwt.encode({"sub": claims["sub"], "sid": claims["sid"]}, KEY, algorithm="HS256"),
    }
