//! Logging in: the identity check at the greeting, LOGIN, AUTHENTICATE
//! (PLAIN with a password, EXTERNAL with the client key the front door
//! verified), the failed-login budget, and the small exchanges around it
//! (ID, ENABLE).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{bad, no, ok, ok_code, store_err, Reply};
use super::{ImapError, Session, MAX_AUTH_FAILURES, UNAUTH_TIMEOUT};
use crate::mail::imap::parser::{self, AuthLine};
use crate::mail::imap::response::{self, Code, Status};
use crate::mail::login::LoginError;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Does the identity's account exist? A key left in the registry after
    /// its account was removed must not open the mailbox (nor recreate it).
    pub(super) async fn identity_valid(&self) -> bool {
        let Some(id) = &self.peer.identity else {
            return true;
        };
        match self.store.account_for(&id.account).await {
            Ok(Some(acc)) => acc == id.account,
            Ok(None) => false,
            Err(LoginError::Account(e)) => {
                tracing::error!("accounts: {e}");
                false
            }
            Err(e) => {
                tracing::error!("accounts task: {e}");
                false
            }
        }
    }

    async fn auth_fail(&mut self, code: Code, text: &str) -> Reply {
        self.auth_failures += 1;
        tracing::info!("login failed: {text}");
        // Slows down password guessing without holding anything but a timer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            response::untagged(&mut self.out, Status::Bye, None, "too many failed logins");
            self.state.log_out();
        }
        no(Some(code), text)
    }

    /// Check a password login; with an identity it must name its account.
    async fn password_login(
        &mut self,
        authz: Option<&[u8]>,
        user: &[u8],
        password: &[u8],
    ) -> Reply {
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return self
                .auth_fail(Code::AuthenticationFailed, "invalid credentials")
                .await;
        };
        if let Some(id) = &self.peer.identity {
            // Checked before the password, so that a login for another
            // address never reaches account auto-creation.
            let named = self.store.account_for(user).await;
            if !matches!(named, Ok(Some(ref a)) if *a == id.account) {
                return self
                    .auth_fail(
                        Code::AuthenticationFailed,
                        "this client key belongs to another account",
                    )
                    .await;
            }
        }
        let client = self.peer.client_addr.map(|a| a.ip());
        let found = match self.ctx.logins.check(client, user, password).await {
            Ok(Some(acc)) => match authz.filter(|z| !z.is_empty()) {
                None => Ok((Some(acc), None)),
                Some(z) => {
                    let z = String::from_utf8_lossy(z);
                    self.store
                        .account_for(&z)
                        .await
                        .map(|z| (Some(acc), Some(z)))
                }
            },
            Ok(None) => Ok((None, None)),
            Err(e) => Err(e),
        };
        let account = match found {
            Ok((Some(acc), None)) => acc,
            Ok((Some(acc), Some(z))) if z.as_deref() == Some(acc.as_str()) => acc,
            Ok((Some(_), Some(_))) => {
                return self
                    .auth_fail(Code::AuthorizationFailed, "authorization identity differs")
                    .await
            }
            Ok((None, _)) => {
                return self
                    .auth_fail(Code::AuthenticationFailed, "invalid credentials")
                    .await
            }
            Err(e) if e.is_limit() => {
                return self
                    .auth_fail(Code::Unavailable, "too many failed logins, try again later")
                    .await
            }
            Err(LoginError::Account(e)) => {
                tracing::error!("accounts: {e}");
                return no(
                    Some(Code::Unavailable),
                    "accounts unavailable, try again later",
                );
            }
            Err(e) => {
                tracing::error!("accounts task: {e}");
                return no(Some(Code::ServerBug), "internal error");
            }
        };
        if let Some(id) = &self.peer.identity {
            if id.account != account {
                return self
                    .auth_fail(
                        Code::AuthenticationFailed,
                        "this client key belongs to another account",
                    )
                    .await;
            }
        }
        match self.start_account(&account).await {
            Ok(()) => self.logged_in_reply(),
            Err(e) => store_err(e),
        }
    }

    fn logged_in_reply(&self) -> Reply {
        ok_code(
            Code::Capability(self.caps().iter().map(|s| s.to_string()).collect()),
            "logged in",
        )
    }

    pub(super) async fn login(&mut self, user: &[u8], password: &[u8]) -> Reply {
        self.password_login(None, user, password).await
    }

    pub(super) async fn authenticate(
        &mut self,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> Result<Reply, ImapError> {
        let mech = mechanism.to_ascii_uppercase();
        if mech != "PLAIN" && mech != "EXTERNAL" {
            return Ok(no(Some(Code::Cannot), "unsupported mechanism"));
        }
        let data = match initial {
            Some(d) => d,
            None => {
                response::continuation(&mut self.out, "");
                self.flush().await?;
                loop {
                    match parser::parse_auth_line(&self.buf, &self.ctx.limits) {
                        AuthLine::Response { data, consumed } => {
                            self.consume(consumed);
                            break data;
                        }
                        AuthLine::Cancel { consumed } => {
                            self.consume(consumed);
                            return Ok(bad("AUTHENTICATE cancelled"));
                        }
                        AuthLine::Bad { consumed } => {
                            self.consume(consumed);
                            return Ok(bad("invalid base64"));
                        }
                        AuthLine::Fatal => {
                            return Err(ImapError::Fatal("AUTHENTICATE line too long".into()))
                        }
                        AuthLine::NeedMore => self.read_more(UNAUTH_TIMEOUT).await?,
                    }
                }
            }
        };
        if mech == "PLAIN" {
            let Some((z, c, p)) = parser::sasl_plain(&data) else {
                return Ok(bad("malformed PLAIN response"));
            };
            return Ok(self.password_login(Some(&z), &c, &p).await);
        }
        // EXTERNAL: the client key the front door verified.
        let Some(id) = self.peer.identity.clone() else {
            return Ok(self
                .auth_fail(Code::AuthenticationFailed, "no client key identity")
                .await);
        };
        let authz = String::from_utf8_lossy(&data);
        if !(authz.is_empty()
            || authz.eq_ignore_ascii_case(&id.login)
            || authz.eq_ignore_ascii_case(&id.account))
        {
            return Ok(self
                .auth_fail(
                    Code::AuthorizationFailed,
                    "authorization identity is not the key's login",
                )
                .await);
        }
        Ok(match self.start_account(&id.account).await {
            Ok(()) => self.logged_in_reply(),
            Err(e) => store_err(e),
        })
    }

    // ---- mailboxes ----

    /// ID (RFC 2971 §3.3): `NIL` unless `mail.banner` names the server;
    /// never a version.
    pub(super) fn id(&mut self) -> Reply {
        match self.ctx.cfg.banner.as_deref() {
            Some(b) => response::id(&mut self.out, Some(&[("name", b)])),
            None => response::id(&mut self.out, None),
        }
        ok("ID completed")
    }

    /// ENABLE (RFC 5161): only CONDSTORE is known.
    pub(super) fn enable(&mut self, capabilities: &[String]) -> Reply {
        let mut on = Vec::new();
        for c in capabilities {
            if c.eq_ignore_ascii_case("CONDSTORE") {
                self.condstore = true;
                on.push("CONDSTORE");
            }
        }
        response::enabled(&mut self.out, &on);
        ok("ENABLE completed")
    }
}
