package com.example.auth;

import io.jsonwebtoken.Claims;
import io.jsonwebtoken.Jwts;
import javax.crypto.SecretKey;

public class TokenService {
    private final SecretKey key;

    public TokenService(SecretKey key) {
        this.key = key;
    }

    // Not: Jwts.parser().setSigningKey("secret").parse(token)
    public Claims read(String token) {
        return Jwts.parser().verifyWith(key).requireAudience("orders").requireIssuer("https://auth.example.com")
            .clockSkewSeconds(30).build().parseSignedClaims(token).getPayload();
    }
}
