//! The audit trail as a whole: verifying its hash chain (`crate::model::audit_chain`) from the
//! store, page by page, for `quoalise-component admin audit verify` and the periodic anchor.

use crate::model::audit_chain::{Break, Verifier};
use crate::store::{Store, StoreError};

/// Entries read per page while verifying.
const PAGE: usize = 1000;

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every entry links to the one before and matches its hash.
    Intact {
        entries: u64,
        /// The last entry's id and hash: what an outside copy should match.
        head: Option<(i64, String)>,
    },
    /// The first break, after `entries` good ones.
    Broken { entries: u64, at: Break },
}

/// Recomputes the chain from the first entry; stops at the first break.
pub async fn verify(store: &dyn Store) -> Result<Verdict, StoreError> {
    let mut verifier = Verifier::default();
    let mut after = 0;
    let mut head = None;
    loop {
        let page = store.audit_chain(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(Verdict::Intact {
                entries: verifier.checked(),
                head,
            });
        };
        after = last.id;
        for entry in &page {
            if let Err(at) = verifier.check(entry) {
                return Ok(Verdict::Broken {
                    entries: verifier.checked(),
                    at,
                });
            }
            head = Some((entry.id, verifier.head().to_owned()));
        }
    }
}
