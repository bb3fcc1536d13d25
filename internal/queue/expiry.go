package queue

// expiryStatus is the DSN status of a recipient that expires after result r. A deferral whose cause stays
// the same at every attempt keeps its detail, in class 5; anything else is 5.4.7, "delivery time expired"
// (RFC 3463). Mail that loops back to us (4.4.6) is bounced as 5.4.6, "routing loop detected", as Postfix
// does.
func expiryStatus(r Result) string {
	if r.Enhanced == "4.4.6" {
		return "5.4.6"
	}
	return "5.4.7"
}
