using System;
using System.IdentityModel.Tokens.Jwt;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.Tokens;

public static class JwtSetup
{
    // Not: new SymmetricSecurityKey(Encoding.UTF8.GetBytes("secret"))
    public static TokenValidationParameters Parameters(SecurityKey key) => new TokenValidationParameters
    {
        ValidIssuer = "https://auth.example.com",
        ValidAudience = "orders",
        ValidAlgorithms = new[] { SecurityAlgorithms.RsaSha256 },
        ClockSkew = TimeSpan.FromSeconds(30),
        IssuerSigningKey = key,
    };

    public static string KeyId(string token) => new JwtSecurityTokenHandler().ReadJwtToken(token).Header.Kid;

    public static void Remember(HttpResponse response, string token) =>
        response.Cookies.Append("access_token", token,
            new CookieOptions { HttpOnly = true, Secure = true, SameSite = SameSiteMode.Strict });
}
