package com.example.auth;

import com.auth0.jwt.JWT;
import com.auth0.jwt.algorithms.Algorithm;
import com.auth0.jwt.interfaces.DecodedJWT;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.sql.Connection;
import javax.servlet.http.Cookie;
import javax.servlet.http.HttpServletResponse;
import org.springframework.http.ResponseCookie;

public class Verifier {
    public DecodedJWT verify(String token) {
        return JWT.require(Algorithm.HMAC256("changeme")).acceptLeeway(3600).build().verify(token);
    }

    public String subject(String token) {
        return JWT.decode(token).getSubject();
    }

    public byte[] keyFor(String token, Connection db) throws Exception {
        String kid = JWT.decode(token).getKeyId();
        db.createStatement().executeQuery("SELECT pem FROM keys WHERE kid = '" + kid + "'");
        return Files.readAllBytes(Paths.get("/etc/keys", kid));
    }

    public void remember(HttpServletResponse response, String token) {
        Cookie cookie = new Cookie("access_token", token);
        cookie.setHttpOnly(true);
        response.addCookie(cookie);
    }

    public String springCookie(String token) {
        return ResponseCookie.from("refresh_token", token).httpOnly(true).build().toString();
    }
}
