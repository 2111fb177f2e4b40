from flask import make_response


def login(token):
    response = make_response("ok")
    response.set_cookie("access_token", token, httponly=True, secure=True, samesite="Lax")
    return response
