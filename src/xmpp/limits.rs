//! Fair limits per requester (bare JID): requests in flight and requests per second.
//!
//! The link asks [`RequestLimits::admit`] before handing a request to a handler. A requester
//! over a limit gets an immediate error (`wait` + `resource-constraint`, with a text naming the
//! limit: in flight or rate), never a silent drop and never
//! a queue: one account flooding the component only fills its own allowance, so the handler
//! pool stays free for everybody else. Requests that read history cost more tokens.
//!
//! State is per requester seen recently: requesters with nothing in flight and a full bucket are
//! forgotten by [`RequestLimits::forget_idle`], so many accounts cannot grow it without bound.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota};
use xmpp_parsers::jid::BareJid;

use crate::config::LimitsConfig;
use crate::request::error::RequestError;

/// How much a request costs against its requester's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    /// Discovery, ping, version, subscriptions: cheap.
    Light,
    /// Ad-hoc commands and PubSub item retrieval: they read history (and may call upstream).
    Heavy,
}

/// The limits of every requester.
pub struct RequestLimits {
    max_in_flight: u32,
    in_flight: Mutex<HashMap<BareJid, u32>>,
    rate: DefaultKeyedRateLimiter<BareJid>,
    per_second: NonZeroU32,
    heavy_cost: NonZeroU32,
}

/// A request being handled; dropping it frees its requester's slot.
pub(crate) struct InFlight {
    limits: Arc<RequestLimits>,
    requester: BareJid,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.limits.lock();
        if let Some(n) = map.get_mut(&self.requester) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.requester);
            }
        }
    }
}

impl RequestLimits {
    pub fn new(config: &LimitsConfig) -> Arc<Self> {
        let one = NonZeroU32::MIN;
        let per_second = NonZeroU32::new(config.requests_per_second).unwrap_or(one);
        let burst = NonZeroU32::new(config.requests_burst).unwrap_or(one);
        Arc::new(RequestLimits {
            max_in_flight: config.requests_in_flight.max(1),
            in_flight: Mutex::new(HashMap::new()),
            rate: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            per_second,
            heavy_cost: NonZeroU32::new(config.history_cost).unwrap_or(one),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BareJid, u32>> {
        // A panic while holding this lock leaves only counters behind: keep using them.
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits one request of `requester`, or says which limit it is over.
    pub(crate) fn admit(
        self: &Arc<Self>,
        requester: &BareJid,
        cost: Cost,
    ) -> Result<InFlight, RequestError> {
        let mut map = self.lock();
        let busy = map.get(requester).copied().unwrap_or(0);
        if busy >= self.max_in_flight {
            return Err(RequestError::ResourceConstraint(format!(
                "You already have {busy} requests being handled (at most {}); wait for their answers",
                self.max_in_flight
            )));
        }
        let tokens = match cost {
            Cost::Light => NonZeroU32::MIN,
            Cost::Heavy => self.heavy_cost,
        };
        if !matches!(self.rate.check_key_n(requester, tokens), Ok(Ok(()))) {
            return Err(self.rate_error());
        }
        *map.entry(requester.clone()).or_insert(0) += 1;
        Ok(InFlight {
            limits: self.clone(),
            requester: requester.clone(),
        })
    }

    /// Requests of `requester` being handled now.
    pub(crate) fn in_flight_of(&self, requester: &BareJid) -> u32 {
        self.lock().get(requester).copied().unwrap_or(0)
    }

    /// Whether `requester` holds more than half of its in-flight allowance. Under pressure such
    /// a requester is refused rather than served from the reserved handler slots: half, not
    /// "anything", because a well-behaved client whose earlier answers sit behind a slow server
    /// legitimately has one or two requests in flight.
    pub(crate) fn holds_many(&self, requester: &BareJid) -> bool {
        self.in_flight_of(requester) > (self.max_in_flight / 2).max(1)
    }

    /// Charges the rest of a heavy request's cost, for a request first admitted as light.
    pub(crate) fn charge_heavy(&self, requester: &BareJid) -> Result<(), RequestError> {
        let Some(rest) = NonZeroU32::new(self.heavy_cost.get() - 1) else {
            return Ok(());
        };
        if matches!(self.rate.check_key_n(requester, rest), Ok(Ok(()))) {
            Ok(())
        } else {
            Err(self.rate_error())
        }
    }

    fn rate_error(&self) -> RequestError {
        RequestError::RateLimited(format!(
            "Too many requests: at most {} per second (history requests count {}); slow down",
            self.per_second, self.heavy_cost
        ))
    }

    /// Forgets requesters whose rate state is back to full (call it now and then).
    pub(crate) fn forget_idle(&self) {
        self.rate.retain_recent();
        self.rate.shrink_to_fit();
    }

    /// Requesters whose rate state is remembered.
    pub(crate) fn tracked(&self) -> usize {
        self.rate.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn limits(in_flight: u32, per_second: u32, burst: u32) -> Arc<RequestLimits> {
        RequestLimits::new(&LimitsConfig {
            requests_in_flight: in_flight,
            requests_per_second: per_second,
            requests_burst: burst,
            history_cost: 5,
            ..LimitsConfig::default()
        })
    }

    fn jid(s: &str) -> BareJid {
        BareJid::from_str(s).unwrap()
    }

    #[test]
    fn in_flight_is_per_requester_and_freed_on_drop() {
        let l = limits(2, 1000, 1000);
        let (bob, carol) = (jid("bob@localhost"), jid("carol@localhost"));
        let a = l.admit(&bob, Cost::Light).unwrap();
        let _b = l.admit(&bob, Cost::Light).unwrap();
        let err = l.admit(&bob, Cost::Light).err().unwrap();
        assert!(matches!(err, RequestError::ResourceConstraint(_)), "{err}");
        let _c = l.admit(&carol, Cost::Light).unwrap();
        assert_eq!((l.in_flight_of(&bob), l.in_flight_of(&carol)), (2, 1));
        drop(a);
        assert_eq!(l.in_flight_of(&bob), 1);
        let _d = l.admit(&bob, Cost::Light).unwrap();
    }

    #[test]
    fn holding_many_means_more_than_half_the_allowance() {
        let l = limits(8, 1000, 1000);
        let bob = jid("bob@localhost");
        let held: Vec<_> = (0..4)
            .map(|_| l.admit(&bob, Cost::Light).unwrap())
            .collect();
        assert!(!l.holds_many(&bob), "4 of 8 is not many");
        let fifth = l.admit(&bob, Cost::Light).unwrap();
        assert!(l.holds_many(&bob), "5 of 8 is");
        drop((held, fifth));
        assert!(!l.holds_many(&bob));
        let one = limits(1, 1000, 1000);
        let _only = one.admit(&bob, Cost::Light).unwrap();
        assert!(!one.holds_many(&bob), "an allowance of 1 is never many");
    }

    #[test]
    fn rate_is_per_requester_and_history_costs_more() {
        let l = limits(100, 1, 10);
        let (bob, carol) = (jid("bob@localhost"), jid("carol@localhost"));
        let mut admitted = 0;
        while l.admit(&bob, Cost::Light).is_ok() {
            admitted += 1;
            assert!(admitted <= 10);
        }
        assert_eq!(admitted, 10);
        let err = l.admit(&bob, Cost::Light).err().unwrap();
        assert!(matches!(err, RequestError::RateLimited(_)), "{err}");
        assert!(l.admit(&carol, Cost::Heavy).is_ok());
        assert!(l.admit(&carol, Cost::Heavy).is_ok());
        assert!(l.admit(&carol, Cost::Heavy).is_err());
    }

    #[test]
    fn a_refused_request_takes_no_slot() {
        let l = limits(1, 1, 1);
        let bob = jid("bob@localhost");
        let held = l.admit(&bob, Cost::Light).unwrap();
        drop(held);
        assert!(l.admit(&bob, Cost::Light).is_err()); // rate, not in flight
        assert!(l.lock().is_empty());
    }
}
