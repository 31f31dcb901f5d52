//! Which command runs in which state (RFC 3501 §6): the commands valid in
//! any state, then by [`State`](super::state::State): login commands before
//! authentication, mailbox commands after it, message commands only with a
//! mailbox selected. Each command goes to the handler of its concern.

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::{bad, ok, Reply};
use super::{ImapError, Session};
use crate::mail::imap::parser::{CommandBody, ListCommand};
use crate::mail::imap::response::{self, Status};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Run one command; `None` when it already wrote its tagged reply.
    pub(super) async fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody,
    ) -> Result<Option<Reply>, ImapError> {
        use CommandBody as C;
        // Valid in any state.
        match body {
            C::Capability => {
                let caps = self.caps();
                response::capability(&mut self.out, &caps);
                return Ok(Some(ok("CAPABILITY completed")));
            }
            C::Noop => return Ok(Some(ok("NOOP completed"))),
            C::Check => {
                return Ok(Some(if self.state.selected().is_some() {
                    ok("CHECK completed")
                } else {
                    bad("no mailbox selected")
                }))
            }
            C::Logout => {
                response::untagged(&mut self.out, Status::Bye, None, "logging out");
                // The updates of the selected mailbox still follow the BYE.
                if self.state.selected().is_some() {
                    self.sync(true).await;
                }
                self.state.log_out();
                return Ok(Some(ok("LOGOUT completed")));
            }
            C::Id { .. } => return Ok(Some(self.id())),
            C::StartTls => {
                return Ok(Some(bad(
                    "STARTTLS not offered: TLS ends at the front door",
                )))
            }
            C::Compress { mechanism } if self.state.account().is_some() => {
                return self.compress(tag, &mechanism).await;
            }
            C::GetQuota { .. } | C::GetQuotaRoot { .. } if self.ctx.cfg.quota.is_none() => {
                return Ok(Some(bad("QUOTA not offered: no quota is configured")))
            }
            _ => {}
        }
        let Some(account) = self.state.account().map(str::to_owned) else {
            return Ok(Some(match body {
                C::Login { user, password } => self.login(&user, &password).await,
                C::Authenticate { mechanism, initial } => {
                    self.authenticate(&mechanism, initial).await?
                }
                _ => bad("log in first"),
            }));
        };
        if self.state.is_logout() {
            return Ok(Some(bad("logging out")));
        }
        let account = account.as_str();
        let reply = match body {
            C::Login { .. } | C::Authenticate { .. } => bad("already logged in"),
            C::Select { mailbox, condstore } => {
                self.select(account, &mailbox, condstore, false).await
            }
            C::Examine { mailbox, condstore } => {
                self.select(account, &mailbox, condstore, true).await
            }
            C::Create { mailbox, .. } => self.create(account, &mailbox).await,
            C::Delete { mailbox } => self.delete(account, &mailbox).await,
            C::Rename { from, to } => self.rename(account, &from, &to).await,
            C::Subscribe { mailbox } => self.subscribe(account, &mailbox, true).await,
            C::Unsubscribe { mailbox } => self.subscribe(account, &mailbox, false).await,
            C::List(l) => self.list(account, l, false).await,
            C::Lsub { reference, pattern } => {
                let l = ListCommand {
                    reference,
                    patterns: vec![pattern],
                    select: vec!["SUBSCRIBED".into()],
                    ..ListCommand::default()
                };
                self.list(account, l, true).await
            }
            C::Status { mailbox, items } => self.status(account, &mailbox, &items).await,
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(account, &mailbox, &flags, date, message).await,
            C::Enable { capabilities } => self.enable(&capabilities),
            C::Namespace => {
                response::namespace(&mut self.out, "", crate::mail::store::DELIMITER);
                ok("NAMESPACE completed")
            }
            C::GetQuotaRoot { mailbox } => self.get_quota_root(account, &mailbox).await,
            C::GetQuota { root } => self.get_quota(account, &root).await,
            C::GetMetadata {
                mailbox,
                entries,
                depth,
                max_size,
            } => {
                self.get_metadata(account, &mailbox, &entries, depth, max_size)
                    .await
            }
            C::SetMetadata { mailbox, entries } => {
                self.set_metadata(account, mailbox, entries).await
            }
            C::Idle => return self.idle(tag, account).await.map(|_| None),
            // Selected state only from here.
            body => {
                if self.state.selected().is_none() {
                    bad("no mailbox selected")
                } else {
                    self.selected_command(account, body).await?
                }
            }
        };
        Ok(Some(reply))
    }

    /// The commands of the selected state.
    async fn selected_command(
        &mut self,
        account: &str,
        body: CommandBody,
    ) -> Result<Reply, ImapError> {
        use CommandBody as C;
        Ok(match body {
            C::Close => self.close(account).await,
            C::Unselect => {
                self.state.deselect();
                ok("UNSELECT completed")
            }
            C::Expunge => self.expunge(account, None).await,
            C::UidExpunge { set } => self.expunge(account, Some(set)).await,
            C::Search {
                uid,
                charset,
                criteria,
            } => self.search(account, uid, charset, &criteria).await,
            C::Fetch {
                uid,
                set,
                items,
                changed_since,
            } => {
                self.fetch(account, uid, &set, &items, changed_since)
                    .await?
            }
            C::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                self.store(account, uid, &set, unchanged_since, mode, silent, &flags)
                    .await
            }
            C::Copy { uid, set, mailbox } => self.copy(account, uid, &set, &mailbox, false).await,
            C::Move { uid, set, mailbox } => self.copy(account, uid, &set, &mailbox, true).await,
            _ => bad("command not valid in this state"),
        })
    }
}
