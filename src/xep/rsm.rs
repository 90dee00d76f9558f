//! XEP-0059: Result Set Management (paging of long lists).
//!
//! Pages are located by exact UID match in the list's own order, not by comparing strings, so the
//! order a handler chooses (e.g. usage points by id) is the order clients page through.

use xmpp_parsers::rsm::{First, SetQuery, SetResult};

use crate::request::error::RequestError;

/// Page size when the client asks for none.
pub(crate) const DEFAULT_PAGE: usize = 500;
/// Largest page we return whatever the client asks, to keep answers far below stanza limits.
pub(crate) const MAX_PAGE: usize = 1000;

/// One page of `items` and the `<set/>` to send with it (`None` when the client sent no `<set/>`
/// and the whole list fits in one default page).
pub(crate) fn page<T: Clone>(
    items: &[T],
    uid: impl Fn(&T) -> String,
    query: Option<&SetQuery>,
) -> Result<(Vec<T>, Option<SetResult>), RequestError> {
    let max = query
        .and_then(|q| q.max)
        .unwrap_or(DEFAULT_PAGE)
        .min(MAX_PAGE);
    let position = |wanted: &str| {
        items
            .iter()
            .position(|item| uid(item) == wanted)
            .ok_or(RequestError::ItemNotFound)
    };
    let (start, end) = match query {
        Some(SetQuery {
            after: Some(after), ..
        }) => {
            let start = position(after)? + 1;
            (start, (start + max).min(items.len()))
        }
        Some(SetQuery {
            before: Some(before),
            ..
        }) => {
            let end = if before.is_empty() {
                items.len()
            } else {
                position(before)?
            };
            (end.saturating_sub(max), end)
        }
        Some(SetQuery {
            index: Some(index), ..
        }) => {
            let start = (*index).min(items.len());
            (start, (start + max).min(items.len()))
        }
        _ => (0, max.min(items.len())),
    };
    let slice = items[start..end].to_vec();
    let truncated = slice.len() < items.len();
    if query.is_none() && !truncated {
        return Ok((slice, None));
    }
    let result = SetResult {
        first: slice.first().map(|item| First {
            index: Some(start),
            item: uid(item),
        }),
        last: slice.last().map(&uid),
        count: Some(items.len()),
    };
    Ok((slice, Some(result)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(max: Option<usize>, after: Option<&str>, before: Option<&str>) -> SetQuery {
        SetQuery {
            max,
            after: after.map(Into::into),
            before: before.map(Into::into),
            index: None,
        }
    }

    fn items(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("item{i:02}")).collect()
    }

    #[test]
    fn no_query_small_list_has_no_set() {
        let (page, set) = page(&items(3), Clone::clone, None).unwrap();
        assert_eq!(page.len(), 3);
        assert!(set.is_none());
    }

    #[test]
    fn no_query_long_list_is_truncated_with_a_set() {
        let (page, set) = page(&items(DEFAULT_PAGE + 5), Clone::clone, None).unwrap();
        assert_eq!(page.len(), DEFAULT_PAGE);
        assert_eq!(set.unwrap().count, Some(DEFAULT_PAGE + 5));
    }

    #[test]
    fn forward_paging() {
        let all = items(5);
        let (p1, s1) = page(&all, Clone::clone, Some(&query(Some(2), None, None))).unwrap();
        assert_eq!(p1, ["item00", "item01"]);
        let s1 = s1.unwrap();
        assert_eq!(s1.count, Some(5));
        assert_eq!(s1.first.as_ref().unwrap().index, Some(0));
        let last = s1.last.unwrap();
        let (p2, _) = page(&all, Clone::clone, Some(&query(Some(2), Some(&last), None))).unwrap();
        assert_eq!(p2, ["item02", "item03"]);
        let (p3, s3) = page(
            &all,
            Clone::clone,
            Some(&query(Some(2), Some("item03"), None)),
        )
        .unwrap();
        assert_eq!(p3, ["item04"]);
        assert_eq!(s3.unwrap().first.unwrap().index, Some(4));
        let (p4, s4) = page(
            &all,
            Clone::clone,
            Some(&query(Some(2), Some("item04"), None)),
        )
        .unwrap();
        assert!(p4.is_empty());
        let s4 = s4.unwrap();
        assert!(s4.first.is_none() && s4.last.is_none());
    }

    #[test]
    fn backward_paging_and_count_only() {
        let all = items(5);
        let (last_page, _) =
            page(&all, Clone::clone, Some(&query(Some(2), None, Some("")))).unwrap();
        assert_eq!(last_page, ["item03", "item04"]);
        let (before, _) = page(
            &all,
            Clone::clone,
            Some(&query(Some(2), None, Some("item03"))),
        )
        .unwrap();
        assert_eq!(before, ["item01", "item02"]);
        let (none, set) = page(&all, Clone::clone, Some(&query(Some(0), None, None))).unwrap();
        assert!(none.is_empty());
        assert_eq!(set.unwrap().count, Some(5));
    }

    #[test]
    fn unknown_uid_is_item_not_found_and_max_is_capped() {
        let all = items(3);
        assert!(matches!(
            page(&all, Clone::clone, Some(&query(None, Some("nope"), None))),
            Err(RequestError::ItemNotFound)
        ));
        let big = items(MAX_PAGE + 10);
        let (p, _) = page(
            &big,
            Clone::clone,
            Some(&query(Some(usize::MAX), None, None)),
        )
        .unwrap();
        assert_eq!(p.len(), MAX_PAGE);
    }
}
