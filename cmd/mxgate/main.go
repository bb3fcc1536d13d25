// Command mxgate is an outbound mail gateway: it accepts mail by SMTP, queues it durably and delivers it to
// each recipient domain's MX hosts with the strongest transport security the domain asks for (MTA-STS,
// REQUIRETLS, per-domain rules) and reports TLS failures to the domains (TLSRPT).
//
// Run `mxgate help` for the commands.
package main

import (
	"os"

	"github.com/mxgate/mxgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
