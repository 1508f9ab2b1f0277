//! An object named on the command line as kubectl prints it, `NAMESPACE/NAME`, or as `NAME` with `-n`.

/// The two ways of naming a namespace disagree.
#[derive(Debug, thiserror::Error)]
#[error("{given} names namespace {from_name}, and -n names {flag}: give one of them")]
pub(crate) struct TwoNamespaces {
    given: String,
    from_name: String,
    flag: String,
}

/// The namespace and name of `given`; without a namespace in it, `-n`'s (`flag`), else `default` (the
/// kubeconfig context's).
pub(crate) fn parse(
    given: &str,
    flag: Option<&str>,
    default: &str,
) -> Result<(String, String), TwoNamespaces> {
    match given.split_once('/') {
        Some((ns, name)) => match flag {
            Some(flag) if flag != ns => Err(TwoNamespaces {
                given: given.to_string(),
                from_name: ns.to_string(),
                flag: flag.to_string(),
            }),
            _ => Ok((ns.to_string(), name.to_string())),
        },
        None => Ok((flag.unwrap_or(default).to_string(), given.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_named_as_kubectl_prints_it_or_with_n() {
        let ok = |given: &str, flag: Option<&str>| parse(given, flag, "ctx").map_err(|e| e.to_string());
        assert_eq!(ok("web", None), Ok(("ctx".into(), "web".into())));
        assert_eq!(ok("web", Some("shop")), Ok(("shop".into(), "web".into())));
        assert_eq!(ok("shop/web", None), Ok(("shop".into(), "web".into())));
        assert_eq!(ok("shop/web", Some("shop")), Ok(("shop".into(), "web".into())));
        assert_eq!(
            ok("shop/web", Some("other")),
            Err("shop/web names namespace shop, and -n names other: give one of them".into())
        );
    }
}
