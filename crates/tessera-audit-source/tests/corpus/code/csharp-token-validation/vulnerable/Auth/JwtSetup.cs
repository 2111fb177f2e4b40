using System;
using System.IdentityModel.Tokens.Jwt;
using System.IO;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.Tokens;

public static class JwtSetup
{
    private const string Secret = "secret";

    public static TokenValidationParameters Parameters() => new TokenValidationParameters
    {
        ValidateIssuer = false,
        ValidateAudience = false,
        ValidateLifetime = false,
        ClockSkew = TimeSpan.FromHours(24),
        IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(Secret)),
        IssuerSigningKeyResolver = (token, securityToken, kid, parameters) =>
            new[] { new SymmetricSecurityKey(File.ReadAllBytes(Path.Combine("/etc/keys", kid))) },
    };

    public static string Subject(string token) => new JwtSecurityTokenHandler().ReadJwtToken(token).Subject;

    public static void Remember(HttpResponse response, string token) =>
        response.Cookies.Append("access_token", token, new CookieOptions { HttpOnly = true });

    public static SymmetricSecurityKey FromEnvironment() =>
        new SymmetricSecurityKey(Encoding.UTF8.GetBytes(Environment.GetEnvironmentVariable("JWT_SECRET") ?? "changeme"));
}
