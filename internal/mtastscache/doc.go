// Package mtastscache implements the sending side's MTA-STS policy cache of RFC 8461
// (https://www.rfc-editor.org/rfc/rfc8461): policy discovery through the _mta-sts TXT record id (Section 3.1),
// caching for max_age from the last fetch (Sections 3.2 and 3.3), the per-use check of Section 5.1, the
// five-minute fetch back-off of Section 3.3 and the proactive refresh of Section 10.2.
//
// Policies are kept in memory, so that a delivery's policy lookup does no SQL, and written through to a Store
// (table mtasts_policies in the node's SQLite database, or in a cluster's PostgreSQL database), so that they
// survive a restart (RFC 8461 Section 10.2: a persisted cache is what protects a domain against an attacker
// who can block discovery).
//
// It deliberately does not parse records or policies, fetch over HTTPS (package mtasts does) or apply a policy
// to a delivery (package tlspolicy does). It caches nothing negative: a domain without a policy costs one TXT
// lookup per use, and failed fetches are remembered only in memory, as a back-off per (domain, id).
package mtastscache
