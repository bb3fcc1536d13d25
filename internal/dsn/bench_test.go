package dsn

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// BenchmarkBuildDSN builds a failure DSN for one recipient returning a 2 KiB original in full.
func BenchmarkBuildDSN(b *testing.B) {
	at := time.Date(2026, 3, 7, 9, 15, 30, 0, time.UTC)
	orig := []byte("From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: numbers\r\n" +
		"Message-ID: <abc@sender.test>\r\n\r\n" + strings.Repeat("The quick brown fox jumps over the lazy dog.\r\n", 45))
	b.ReportAllocs()
	for b.Loop() {
		_, err := Build(Params{
			ReportingMTA: "mx-out.example.net",
			From:         "postmaster@mx-out.example.net",
			To:           "alice@sender.test",
			Arrival:      at.Add(-time.Hour),
			Original:     bytes.NewReader(orig),
			Ret:          "FULL",
			Now:          func() time.Time { return at },
			MessageID:    "dsn-1@mx-out.example.net",
			Recipients: []Recipient{{
				FinalRecipient: "bob@example.com",
				Action:         ActionFailed,
				Status:         "5.1.1",
				RemoteMTA:      "mx1.example.com",
				DiagnosticCode: "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
				LastAttempt:    at,
			}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
