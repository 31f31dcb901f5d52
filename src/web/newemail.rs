//! Minting credentials for `POST /new`, as chatmail's `newemail.py` does:
//! a local part of `username_max_length` characters from `[a-z0-9]` and a
//! password of `password_min_length + 3` characters from ASCII letters,
//! digits and punctuation, at the first mail domain. The account itself is
//! created at its first login (the mail servers' job); nothing is stored
//! here. Pure apart from the random source, which the caller passes in.

/// `string.ascii_lowercase + string.digits` (newemail.py's `ALPHANUMERIC`).
pub const LOCAL_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// `string.ascii_letters + string.digits + string.punctuation`
/// (newemail.py's `ALPHANUMERIC_PUNCT`).
pub const PASSWORD_ALPHABET: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A fresh address and password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// The operating system's random source failed (the server's fault).
#[derive(Debug, thiserror::Error)]
#[error("no random bytes: {0}")]
pub struct NoRandom(pub String);

/// `n` characters drawn uniformly from `alphabet` (rejection sampling, so
/// no character is likelier than another).
fn draw(
    alphabet: &[u8],
    n: usize,
    random: &mut dyn FnMut(&mut [u8]) -> Result<(), NoRandom>,
) -> Result<String, NoRandom> {
    // Bytes at or above `limit` would bias the modulo: drawn again.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    // Each byte is kept with probability > 1/2: 64 rounds of 64 bytes
    // failing to give the few dozen needed is not a thing that happens.
    for _ in 0..64 {
        random(&mut buf)?;
        for &b in &buf {
            if out.len() == n {
                return Ok(out);
            }
            if usize::from(b) < limit {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
        if out.len() == n {
            return Ok(out);
        }
    }
    Err(NoRandom("random source kept giving rejected bytes".into()))
}

/// Credentials at `domain` with a local part of `local_len` characters and
/// a password of `password_len`.
pub fn mint(
    domain: &str,
    local_len: usize,
    password_len: usize,
    random: &mut dyn FnMut(&mut [u8]) -> Result<(), NoRandom>,
) -> Result<Credentials, NoRandom> {
    let local = draw(LOCAL_ALPHABET, local_len, random)?;
    let password = draw(PASSWORD_ALPHABET, password_len, random)?;
    Ok(Credentials {
        email: format!("{local}@{domain}"),
        password,
    })
}

/// The operating system's random source.
pub fn os_random(buf: &mut [u8]) -> Result<(), NoRandom> {
    getrandom::fill(buf).map_err(|e| NoRandom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_alphabets() {
        // len(string.ascii_letters + string.digits + string.punctuation)
        assert_eq!(PASSWORD_ALPHABET.len(), 94);
        assert_eq!(LOCAL_ALPHABET.len(), 36);
    }

    #[test]
    fn shape_follows_lengths_and_alphabets() {
        let c = mint("chat.example.org", 9, 12, &mut os_random).unwrap();
        let (local, domain) = c.email.split_once('@').unwrap();
        assert_eq!(domain, "chat.example.org");
        assert_eq!(local.len(), 9);
        assert!(local.bytes().all(|b| LOCAL_ALPHABET.contains(&b)));
        assert_eq!(c.password.len(), 12);
        assert!(c.password.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
    }

    #[test]
    fn biased_bytes_are_drawn_again() {
        // 36 * 7 = 252: bytes 252..=255 must be skipped, 0 gives 'a'.
        let mut feed = |b: &mut [u8]| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = if i % 2 == 0 { 255 } else { 37 };
            }
            Ok(())
        };
        assert_eq!(draw(LOCAL_ALPHABET, 3, &mut feed).unwrap(), "bbb");
        let mut stuck = |b: &mut [u8]| {
            b.fill(255);
            Ok(())
        };
        assert!(draw(LOCAL_ALPHABET, 3, &mut stuck).is_err());
    }
}
