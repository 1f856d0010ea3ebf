//! Credentials: parsing the `Authorization` header, personal and installation tokens, and
//! GitHub App JWTs (RS256, `iss` = the app id, checked `exp` and `iat`).

use crate::state::State;
use crate::{APP_BOT_LOGIN, Auth, PAT_LOGIN, clock};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// A registered GitHub App.
pub(crate) struct App {
    pub app_id: u64,
    pub installation_id: u64,
    key: DecodingKey,
}

impl App {
    pub fn new(app_id: u64, public_key_pem: &str, installation_id: u64) -> Result<App, String> {
        let key =
            DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).map_err(|e| e.to_string())?;
        Ok(App {
            app_id,
            installation_id,
            key,
        })
    }
}

/// Who a request acts as.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub login: String,
}

/// Reads the `Authorization` header as GitHub does.
pub(crate) fn parse(header: Option<&str>) -> Auth {
    let Some(value) = header else {
        return Auth::None;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => match jwt_issuer(rest) {
            Some(app_id) => Auth::AppJwt { app_id },
            None => Auth::Token(rest.to_string()),
        },
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            Auth::Basic {
                user: user.to_string(),
                password: password.to_string(),
            }
        }
        _ => Auth::None,
    }
}

/// The `iss` of something shaped like a JWT, unverified.
fn jwt_issuer(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match &claims["iss"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The caller a token (personal or installation, unexpired) acts as.
pub(crate) fn token_caller(state: &State, token: &str) -> Option<Caller> {
    if state.tokens.contains(token) {
        return Some(Caller {
            login: PAT_LOGIN.into(),
        });
    }
    match state.installation_tokens.get(token) {
        Some(&expires) if expires > clock::now_secs() => Some(Caller {
            login: APP_BOT_LOGIN.into(),
        }),
        _ => None,
    }
}

/// The caller of a REST request, if its credentials are good.
pub(crate) fn rest_caller(state: &State, auth: &Auth) -> Option<Caller> {
    match auth {
        Auth::Token(t) => token_caller(state, t),
        Auth::Basic { password, .. } => token_caller(state, password),
        _ => None,
    }
}

/// Verifies an app JWT from `header`; returns the app's (id, installation id).
pub(crate) fn verify_jwt(state: &State, header: Option<&str>) -> Result<(u64, u64), String> {
    let token = header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .ok_or("a JWT is needed as Bearer")?
        .trim();
    let app_id = jwt_issuer(token).ok_or("the JWT has no numeric iss")?;
    let app = state
        .apps
        .iter()
        .find(|a| a.app_id == app_id)
        .ok_or("no app with that iss")?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.leeway = 60;
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &app.key, &validation)
        .map_err(|e| format!("the JWT does not verify: {e}"))?;
    let now = clock::now_secs();
    let iat = data.claims["iat"].as_u64().ok_or("iat is not a number")?;
    let exp = data.claims["exp"].as_u64().ok_or("exp is not a number")?;
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past".into(),
        );
    }
    if exp > now + 600 + 60 || exp <= iat {
        return Err("'Expiration time' claim ('exp') is too far in the future".into());
    }
    Ok((app.app_id, app.installation_id))
}

/// A fresh installation token: `ghs_` and 36 letters and digits.
pub(crate) fn new_installation_token() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..36)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect();
    format!("ghs_{tail}")
}
