//! HTTP routes as Spin writes them: an exact path (`/hello`), segments that capture
//! (`/users/:id`), and a trailing wildcard (`/static/...`, `/...` for everything). The most
//! specific route wins: more literal segments first, then more segments, then exact over
//! wildcard — so `/api/users/:id` beats `/api/...` beats `/...`.

use std::collections::BTreeMap;

/// A route that cannot be used, and why (the message names the route).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(String);

/// A parsed route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// As written.
    pub text: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// What a match found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a, T> {
    /// The route's target.
    pub target: &'a T,
    /// The route as written.
    pub route: &'a str,
    /// `:name` captures.
    pub params: BTreeMap<String, String>,
    /// What the wildcard covered (`/a/b` of `/static/a/b` under `/static/...`), else empty.
    pub rest: String,
}

impl Route {
    /// Parses a route; the message says what is wrong.
    pub fn parse(text: &str) -> Result<Route, RouteError> {
        if !text.starts_with('/') {
            return Err(RouteError(format!("route {text:?} must start with /")));
        }
        let mut parts: Vec<&str> = text[1..].split('/').collect();
        if parts.last() == Some(&"") {
            parts.pop();
        }
        let wildcard = parts.last() == Some(&"...");
        if wildcard {
            parts.pop();
        }
        let mut segments = Vec::new();
        for p in parts {
            if p == "..." {
                return Err(RouteError(format!("route {text:?}: `...` may only end a route")));
            }
            if p.is_empty() {
                return Err(RouteError(format!("route {text:?} has an empty segment (//)")));
            }
            match p.strip_prefix(':') {
                Some("") => return Err(RouteError(format!("route {text:?}: a `:` segment needs a name"))),
                Some(name) => segments.push(Segment::Param(name.to_owned())),
                None => segments.push(Segment::Literal(p.to_owned())),
            }
        }
        Ok(Route { text: text.to_owned(), segments, wildcard })
    }

    /// Specificity: literal segments, then all segments, then exact over wildcard.
    fn rank(&self) -> (usize, usize, bool) {
        let literal = self.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        (literal, self.segments.len(), !self.wildcard)
    }

    /// Two routes that would match exactly the same paths (a duplicate).
    fn same_shape(&self, other: &Route) -> bool {
        self.wildcard == other.wildcard
            && self.segments.len() == other.segments.len()
            && self.segments.iter().zip(&other.segments).all(|(a, b)| match (a, b) {
                (Segment::Literal(x), Segment::Literal(y)) => x == y,
                (Segment::Param(_), Segment::Param(_)) => true,
                _ => false,
            })
    }

    fn matches(&self, path: &str) -> Option<(BTreeMap<String, String>, String)> {
        let trimmed = path.trim_start_matches('/');
        let parts: Vec<&str> = if trimmed.is_empty() { vec![] } else { trimmed.split('/').collect() };
        if parts.len() < self.segments.len() || (!self.wildcard && parts.len() != self.segments.len()) {
            return None;
        }
        let mut params = BTreeMap::new();
        for (seg, part) in self.segments.iter().zip(&parts) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    params.insert(name.clone(), (*part).to_owned());
                }
            }
        }
        let rest = parts[self.segments.len()..].iter().map(|p| format!("/{p}")).collect();
        Some((params, rest))
    }
}

/// Routes to targets.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<(Route, T)>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    /// Adds a route; a second route that matches the same paths is an error naming both.
    pub fn add(&mut self, route: &str, target: T) -> Result<(), RouteError> {
        let route = Route::parse(route)?;
        if let Some((existing, _)) = self.routes.iter().find(|(r, _)| r.same_shape(&route)) {
            return Err(RouteError(format!("route {:?} duplicates route {:?}", route.text, existing.text)));
        }
        self.routes.push((route, target));
        // Most specific first, so the first match is the best.
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.0.rank()));
        Ok(())
    }

    /// The best route for `path` (no query string).
    pub fn find(&self, path: &str) -> Option<Matched<'_, T>> {
        self.routes.iter().find_map(|(route, target)| {
            route.matches(path).map(|(params, rest)| Matched { target, route: &route.text, params, rest })
        })
    }

    /// Every route, most specific first.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &T)> {
        self.routes.iter().map(|(r, t)| (r.text.as_str(), t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_route_wins() {
        let mut r = Router::default();
        for (route, t) in
            [("/...", "all"), ("/api/...", "api"), ("/api/users/:id", "user"), ("/api/users/me", "me"), ("/", "root")]
        {
            r.add(route, t).unwrap();
        }
        let hit = |p: &str| *r.find(p).unwrap().target;
        assert_eq!(hit("/api/users/me"), "me");
        assert_eq!(hit("/api/users/42"), "user");
        assert_eq!(r.find("/api/users/42").unwrap().params["id"], "42");
        assert_eq!(hit("/api/other/x"), "api");
        assert_eq!(r.find("/api/other/x").unwrap().rest, "/other/x");
        assert_eq!(hit("/"), "root");
        assert_eq!(hit("/anything/else"), "all");
        let mut exact = Router::default();
        exact.add("/hello", ()).unwrap();
        assert!(exact.find("/hello/x").is_none() && exact.find("/").is_none());
    }

    #[test]
    fn bad_and_duplicate_routes_are_named() {
        assert!(Route::parse("hello").unwrap_err().to_string().contains("start with /"));
        assert!(Route::parse("/a/.../b").unwrap_err().to_string().contains("only end"));
        assert!(Route::parse("/a//b").unwrap_err().to_string().contains("empty segment"));
        let mut r = Router::default();
        r.add("/users/:id", 1).unwrap();
        let err = r.add("/users/:name", 2).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("/users/:name") && err.contains("/users/:id"), "{err}");
    }
}
