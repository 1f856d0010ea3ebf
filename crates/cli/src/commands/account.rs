//! People from the command line: `atelier login` (a password once, then an API token for this
//! machine kept in the XDG config folder, mode 0600), `atelier token …` (your API tokens),
//! `atelier admin …` (accounts and project membership) and `atelier audit` (the audit trail).
//! Passwords are read from a file or stdin, never from the command line.

use crate::GlobalArgs;
use crate::client::Client;
use crate::{config, output};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use engine::api::{AuditEntryView, NewSessionView, NewTokenView, TokenView, UserView};
use serde_json::{Value, json};
use std::io::Read;
use std::path::PathBuf;

const LOGIN_HELP: &str = "\
Signs in with your password (read from --password-file, or stdin), then creates an API token for \
this machine and keeps it, with the server's URL, in $XDG_CONFIG_HOME/atelier/login.json (mode \
0600). Later commands use it whenever no local server.json, --url or --token says otherwise.

Example:
  atelier login --url http://atelier.example:7878 --user ann < ~/.atelier-password";

/// Sign in to a server and keep an API token for this machine
#[derive(Args, Debug)]
#[command(after_help = LOGIN_HELP)]
pub struct LoginArgs {
    /// The server's URL
    #[arg(long)]
    url: String,
    /// Your login
    #[arg(long)]
    user: String,
    /// File holding your password [default: read stdin]
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// Your API tokens
#[derive(Subcommand, Debug)]
#[command(
    after_help = "Example:\n  atelier token create ci --expires-in-days 30\n  atelier token list\n  atelier token list --all   (administrators: every account's)\n  atelier token revoke 3"
)]
pub enum TokenCommand {
    /// Create a token (its secret is printed once)
    Create {
        /// What it is for (e.g. `ci`, `laptop`)
        name: String,
        /// Expire after this many days [default: never]
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List your tokens (never their secrets)
    List {
        /// Every account's tokens, with their owners (administrators)
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token (takes effect on its next request)
    Revoke {
        /// The token's id (`atelier token list`; an administrator may revoke anyone's, listed by
        /// `--all`)
        id: i64,
    },
}

/// Accounts and project membership (administrators)
#[derive(Subcommand, Debug)]
#[command(
    after_help = "Example:\n  atelier admin create-user ann --password-file pw.txt\n  atelier admin member web ann --role owner\n  atelier admin users"
)]
pub enum AdminCommand {
    /// Create an account
    CreateUser {
        login: String,
        /// File holding the password (at least 10 characters) [default: an account without a
        /// password, which signs in with tokens only]
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Make the account an administrator
        #[arg(long)]
        admin: bool,
        /// The account's tasks get the product-level plan and skip the plan gate
        #[arg(long)]
        non_technical: bool,
    },
    /// List the accounts
    Users,
    /// Disable an account: it cannot sign in, its tokens and sessions stop working at once
    Disable { login: String },
    /// Enable a disabled account again
    Enable { login: String },
    /// Make a user an owner or member of a project (or remove them with --remove)
    Member {
        /// The project's name or id
        project: String,
        login: String,
        /// `owner` (may change settings and members) or `member`
        #[arg(long, default_value = "member")]
        role: String,
        /// Remove the user from the project instead
        #[arg(long, conflicts_with = "role")]
        remove: bool,
    },
    /// List a project's members and their roles
    Members {
        /// The project's name or id
        project: String,
    },
}

/// The audit trail (administrators)
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  atelier audit --limit 20")]
pub struct AuditArgs {
    /// Lines to show, newest first
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

fn read_secret(file: Option<&PathBuf>, what: &str) -> Result<String> {
    let text = match file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the {what} file {}", file.display()))?,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read the {what} from stdin"))?;
            text
        }
    };
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        bail!("the {what} is empty");
    }
    Ok(text)
}

pub async fn login(args: LoginArgs, global: &GlobalArgs) -> Result<()> {
    let url = config::normalize_url(&args.url)?;
    let password = read_secret(args.password_file.as_ref(), "password")?;
    let http = reqwest::Client::builder()
        .build()
        .context("cannot create the HTTP client")?;
    let response = http
        .post(format!("{url}/api/login"))
        .json(&json!({"login": args.user, "password": password}))
        .send()
        .await
        .with_context(|| format!("the Atelier server at {url} is not reachable"))?;
    let status = response.status();
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "cannot sign in to {url}: {}",
            body["error"].as_str().unwrap_or(status.as_str())
        );
    }
    let session: NewSessionView = serde_json::from_value(body)?;
    let cookie = cookie.context("the server answered the login without a session cookie")?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
    let response = http
        .post(format!("{url}/api/tokens"))
        .header(reqwest::header::COOKIE, cookie.as_str())
        .header("x-csrf-token", &session.csrf)
        .json(&json!({"name": format!("cli on {host}")}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "signed in, but cannot create a token: {}",
            response.text().await?
        );
    }
    let token: NewTokenView = response.json().await?;
    // The session was only needed to make the token.
    let _ = http
        .post(format!("{url}/api/logout"))
        .header(reqwest::header::COOKIE, cookie.as_str())
        .header("x-csrf-token", &session.csrf)
        .send()
        .await;
    let path = config::write_login(&config::LoginFile {
        url: url.clone(),
        token: token.token,
    })?;
    if global.json {
        return output::print_json(&session.user);
    }
    println!(
        "signed in to {url} as {} (token `{}` kept in {})",
        session.user.login,
        token.name,
        path.display()
    );
    Ok(())
}

pub async fn token(command: TokenCommand, global: &GlobalArgs) -> Result<()> {
    let client = Client::new(config::resolve_target(global)?)?;
    match command {
        TokenCommand::Create {
            name,
            expires_in_days,
        } => {
            let token: NewTokenView = client
                .post(
                    "/api/tokens",
                    &json!({"name": name, "expires_in_days": expires_in_days}),
                )
                .await?;
            if global.json {
                return output::print_json(&token);
            }
            println!(
                "token {} (`{}`), shown once:\n{}",
                token.id, token.name, token.token
            );
        }
        TokenCommand::List { all } => {
            let path = if all {
                "/api/tokens/all"
            } else {
                "/api/tokens"
            };
            let tokens: Vec<TokenView> = client.get(path).await?;
            if global.json {
                return output::print_json(&tokens);
            }
            for t in tokens {
                let owner = if all {
                    format!("{:<16} ", t.owner)
                } else {
                    String::new()
                };
                println!("{:>4}  {owner}{:<24} {}", t.id, t.name, token_state(&t));
            }
        }
        TokenCommand::Revoke { id } => {
            let _: Value = client.delete(&format!("/api/tokens/{id}")).await?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// Whether a token works, and if not why.
fn token_state(token: &TokenView) -> &'static str {
    if token.revoked {
        "revoked"
    } else if token.expired {
        "expired"
    } else if token.owner_disabled {
        "owner disabled"
    } else {
        "live"
    }
}

pub async fn admin(command: AdminCommand, global: &GlobalArgs) -> Result<()> {
    let client = Client::new(config::resolve_target(global)?)?;
    match command {
        AdminCommand::CreateUser {
            login,
            password_file,
            admin,
            non_technical,
        } => {
            let password = password_file
                .as_ref()
                .map(|f| read_secret(Some(f), "password"))
                .transpose()?;
            let user: UserView = client
                .post(
                    "/api/users",
                    &json!({"login": login, "password": password, "admin": admin,
                            "technical": !non_technical}),
                )
                .await?;
            if global.json {
                return output::print_json(&user);
            }
            println!(
                "created {} (id {}){}",
                user.login,
                user.id,
                if user.admin { ", administrator" } else { "" }
            );
        }
        AdminCommand::Disable { login } => {
            return set_disabled(&client, &login, true, global).await;
        }
        AdminCommand::Enable { login } => {
            return set_disabled(&client, &login, false, global).await;
        }
        AdminCommand::Users => {
            let users: Vec<UserView> = client.get("/api/users").await?;
            if global.json {
                return output::print_json(&users);
            }
            for u in users {
                println!(
                    "{:>4}  {:<24} {}{}",
                    u.id,
                    u.login,
                    if u.admin { "admin" } else { "member" },
                    if u.disabled { ", disabled" } else { "" }
                );
            }
        }
        AdminCommand::Member {
            project,
            login,
            role,
            remove,
        } => {
            let path = format!("/api/projects/{project}/members/{login}");
            if remove {
                let _: Value = client.delete(&path).await?;
                println!("{login} is no longer a member of {project}");
            } else {
                let _: Value = client.put(&path, &json!({"role": role})).await?;
                println!("{login} is now {role} of {project}");
            }
        }
        AdminCommand::Members { project } => {
            let members: Vec<engine::api::MemberView> = client
                .get(&format!("/api/projects/{project}/members"))
                .await?;
            if global.json {
                return output::print_json(&members);
            }
            for m in members {
                println!("{:<24} {}", m.login, m.role);
            }
        }
    }
    Ok(())
}

/// Disables or enables an account.
async fn set_disabled(
    client: &Client,
    login: &str,
    disabled: bool,
    global: &GlobalArgs,
) -> Result<()> {
    let user: UserView = client
        .put(
            &format!("/api/users/{login}"),
            &json!({"disabled": disabled}),
        )
        .await?;
    if global.json {
        return output::print_json(&user);
    }
    println!(
        "{} is {}",
        user.login,
        if user.disabled { "disabled" } else { "enabled" }
    );
    Ok(())
}

pub async fn audit(args: AuditArgs, global: &GlobalArgs) -> Result<()> {
    let client = Client::new(config::resolve_target(global)?)?;
    let lines: Vec<AuditEntryView> = client
        .get(&format!("/api/audit?limit={}", args.limit))
        .await?;
    if global.json {
        return output::print_json(&lines);
    }
    for l in lines {
        println!(
            "{:>6}  {}  {} ({})  {} {}{}",
            l.id,
            l.at,
            l.actor,
            l.via,
            l.action,
            l.target,
            l.detail.map(|d| format!(": {d}")).unwrap_or_default()
        );
    }
    Ok(())
}
