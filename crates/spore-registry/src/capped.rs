//! The requests of a pull (and of a login), made by Spore and read under caps: the
//! bearer-token handshake, manifests and blobs. oci-client reads token and manifest answers
//! whole into memory before anyone can look at their size, and its token cache asks the
//! registry again on its own — so a hostile registry, or the token service its challenge
//! names, answering with an endless body would grow the puller without bound. Here an answer
//! stops at its cap (a `Content-Length` over it is refused before the body is read), a blob is
//! streamed into the store's verifying writer, which holds it to its size, and error text is
//! kept short with its control characters escaped. Pushes, to a registry the user chose to
//! write to, are still oci-client's.

use oci_client::secrets::RegistryAuth;

/// What a capped request can come to besides its answer.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The server answered with this status (and the start of its body, for the message).
    Status(u16, String),
    /// The answer is (or says it is) longer than the cap.
    TooBig(Option<u64>),
    /// The answer is not what the protocol says it is.
    Malformed(String),
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

/// The largest token (or catalog) answer read: tokens are a few KiB of JWT.
pub(crate) const MAX_TOKEN: usize = 64 << 10;

/// A GET of `url` with `token` (from the handshake) or else `auth`'s basic credentials.
/// (reqwest drops the credentials on a redirect to another host, as a blob's to a CDN.)
pub(crate) fn get(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    auth: &RegistryAuth,
) -> reqwest::RequestBuilder {
    let request = http.get(url);
    match (token, auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, RegistryAuth::Bearer(token)) => request.bearer_auth(token),
        (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        (None, RegistryAuth::Anonymous) => request,
    }
}

/// The distribution protocol's token handshake: asks `v2` (the registry's `/v2/`) for its
/// challenge and, for a `Bearer` one, the token service it names for a token of `scope`,
/// with `auth`'s basic credentials when there are any. `None`: no bearer challenge (an open
/// registry, or one taking basic credentials on every request). A stored identity token
/// (Docker's `registrytoken`) is the token itself.
pub(crate) async fn token(
    http: &reqwest::Client,
    v2: &str,
    scope: &str,
    auth: &RegistryAuth,
    reach: &crate::Reach,
) -> Result<Option<String>, Failed> {
    if let RegistryAuth::Bearer(token) = auth {
        return Ok(Some(token.clone()));
    }
    let probe = http.get(v2).send().await?;
    let Some(challenge) = probe.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()) else {
        return Ok(None);
    };
    let bearer = http_auth::parser::ChallengeParser::new(challenge)
        .filter_map(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"));
    let Some(bearer) = bearer else { return Ok(None) };
    let param =
        |name: &str| bearer.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_unescaped());
    let realm = param("realm").ok_or_else(|| Failed::Malformed("its Bearer challenge names no realm".into()))?;
    // An address is connected to without the resolver that keeps a reach: judged here.
    reach.check_url(&realm).map_err(|e| Failed::Malformed(format!("its token service: {e}")))?;
    let mut query = vec![("scope", scope.to_owned())];
    if let Some(service) = param("service") {
        query.push(("service", service));
    }
    let request = http.get(&realm).query(&query);
    let request = match auth {
        RegistryAuth::Basic(user, password) => request.basic_auth(user, Some(password)),
        _ => request,
    };
    let body = read(request, MAX_TOKEN).await?;
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
        Failed::Malformed(format!("the token service {realm} answered with something else than a token: {e}"))
    })?;
    answer
        .token
        .or(answer.access_token)
        .map(Some)
        .ok_or_else(|| Failed::Malformed(format!("the token service {realm} answered without a token")))
}

/// Sends `request` and reads its answer: the body of a success, at most `max` bytes of it;
/// a failure as its status and the start of its text.
pub(crate) async fn read(request: reqwest::RequestBuilder, max: usize) -> Result<Vec<u8>, Failed> {
    read_body(open(request).await?, max).await
}

/// Reads the body of an opened answer, at most `max` bytes of it.
pub(crate) async fn read_body(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, Failed> {
    if let Some(length) = response.content_length().filter(|&l| l > max as u64) {
        return Err(Failed::TooBig(Some(length)));
    }
    match body(&mut response, max).await? {
        body if body.len() > max => Err(Failed::TooBig(None)),
        body => Ok(body),
    }
}

/// Sends `request`: a success's response, to be read by the caller; a failure as its status
/// and the start of its text.
pub(crate) async fn open(request: reqwest::RequestBuilder) -> Result<reqwest::Response, Failed> {
    let mut response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let mut body = body(&mut response, ERROR_BODY).await.unwrap_or_default();
        body.truncate(ERROR_BODY);
        // Shown on a terminal and in logs: the server's control characters are escaped, not
        // obeyed (no forged lines, no escape sequences).
        let text = spore_types::escape_controls(String::from_utf8_lossy(&body).trim()).into_owned();
        return Err(Failed::Status(status.as_u16(), text));
    }
    Ok(response)
}

/// Reads the body until its end or until it holds more than `max` bytes (then stops reading).
async fn body(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > max {
            break;
        }
    }
    Ok(body)
}
