package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/client"
)

// An orchestrator reaches a production NATS over TLS with a CA of the
// platform's own, authenticating with an nkey. The client takes the
// connection as it is opened: every way nats.go authenticates works, a
// .creds file (nats.UserCredentials) or a user and password
// (nats.UserInfo) as well, and nats.ClientCert adds a client certificate
// for a server that verifies clients. (Not run: there is no such server
// here.)
func Example_tls() {
	nkey, err := nats.NkeyOptionFromSeed("/etc/orchestrator/dbusers.nk") // a user seed, mode 0600
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect("tls://nats-1.internal:4222,tls://nats-2.internal:4222,tls://nats-3.internal:4222",
		nkey,
		nats.RootCAs("/etc/orchestrator/nats-ca.pem"),
		nats.Name("orchestrator"),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	accounts, err := c.ListUsers(context.Background(), "my-app")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(accounts))
}
