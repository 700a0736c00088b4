//! The manifest GET, read under a cap. oci-client reads a manifest's whole answer into memory
//! before anyone can look at its size, so a hostile registry answering with an endless body
//! would grow the puller without bound; this request stops at the cap (a `Content-Length` over
//! it is refused before the body is read). Authentication is oci-client's: the bearer token
//! its `auth` handshake returned, or the basic credentials.

use oci_client::secrets::RegistryAuth;

/// What a manifest GET can come to besides its bytes.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The registry answered with this status (and the start of its body, for the message).
    Status(u16, String),
    /// The answer is (or says it is) longer than the cap.
    TooBig(Option<u64>),
    /// The connection failed.
    Transport(reqwest::Error),
}

impl From<reqwest::Error> for Failed {
    fn from(e: reqwest::Error) -> Self {
        Failed::Transport(e)
    }
}

/// How much of an error answer is kept for its message.
const ERROR_BODY: usize = 4 << 10;

/// GETs `url` (a `/v2/…/manifests/…` URL) accepting `accept`, with `token` (from oci-client's
/// handshake) or else `auth`'s basic credentials, and reads at most `max` bytes of the answer.
pub(crate) async fn get(
    http: &reqwest::Client,
    url: &str,
    accept: &str,
    token: Option<&str>,
    auth: &RegistryAuth,
    max: usize,
) -> Result<Vec<u8>, Failed> {
    let mut request = http.get(url).header(reqwest::header::ACCEPT, accept);
    request = match (token, auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        (None, _) => request,
    };
    let mut response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let mut body = read(&mut response, ERROR_BODY).await.unwrap_or_default();
        body.truncate(ERROR_BODY);
        // Shown on a terminal: the registry's control characters are escaped, not obeyed.
        let text: String = String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .flat_map(|c| match c.is_control() && c != '\n' {
                true => c.escape_default().collect::<Vec<_>>(),
                false => vec![c],
            })
            .collect();
        return Err(Failed::Status(status.as_u16(), text));
    }
    if let Some(length) = response.content_length().filter(|&l| l > max as u64) {
        return Err(Failed::TooBig(Some(length)));
    }
    match read(&mut response, max).await? {
        body if body.len() > max => Err(Failed::TooBig(None)),
        body => Ok(body),
    }
}

/// Reads the body until its end or until it holds more than `max` bytes (then stops reading).
async fn read(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            break;
        }
    }
    Ok(body)
}
