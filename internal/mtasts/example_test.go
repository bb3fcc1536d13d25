package mtasts_test

import (
	"fmt"

	"github.com/mxgate/mxgate/internal/mtasts"
)

func ExampleParsePolicy() {
	body := []byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n")
	p, err := mtasts.ParsePolicy(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Mode, p.MaxAge, p.MX)
	for _, host := range []string{"MAIL.example.com.", "backup.example.net", "a.b.example.net"} {
		fmt.Println(host, p.Matches(host))
	}
	// Output:
	// enforce 168h0m0s [mail.example.com *.example.net]
	// MAIL.example.com. true
	// backup.example.net true
	// a.b.example.net false
}

func ExampleSelectRecord() {
	rec, err := mtasts.SelectRecord([]string{"v=spf1 -all", "v=STSv1; id=20240101T000000"})
	fmt.Println(rec.ID, err)
	// Output: 20240101T000000 <nil>
}
