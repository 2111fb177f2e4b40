package com.example.auth;

import com.auth0.jwt.JWT;
import com.auth0.jwt.algorithms.Algorithm;
import com.auth0.jwt.interfaces.DecodedJWT;
import java.security.interfaces.RSAPublicKey;
import java.util.Map;
import javax.servlet.http.Cookie;
import javax.servlet.http.HttpServletResponse;
import org.springframework.http.ResponseCookie;

public class Verifier {
    private final Map<String, RSAPublicKey> keys;

    public Verifier(Map<String, RSAPublicKey> keys) {
        this.keys = keys;
    }

    public DecodedJWT verify(String token) {
        RSAPublicKey key = keys.get(JWT.decode(token).getKeyId());
        return JWT.require(Algorithm.RSA256(key, null)).withAudience("orders").withIssuer("https://auth.example.com")
            .acceptLeeway(5).build().verify(token);
    }

    public void remember(HttpServletResponse response, String token) {
        Cookie cookie = new Cookie("access_token", token);
        cookie.setHttpOnly(true);
        cookie.setSecure(true);
        response.addCookie(cookie);
    }

    public String springCookie(String token) {
        return ResponseCookie.from("refresh_token", token).httpOnly(true).secure(true).sameSite("Strict").build().toString();
    }
}
