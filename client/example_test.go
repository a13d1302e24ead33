package client_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/secret"
)

// An orchestrator creates a user with a generated password, lists the
// users of the target, and deletes the user. The example runs a worker of
// its own (an in-process nats-server, and target "demo" on the local
// MariaDB); an orchestrator connects to the platform's NATS instead.
func Example() {
	natsURL, stop := startExampleWorker()
	defer stop()

	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc) // prefix "dbusers"; the worker's key is asked on dbusers.info
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// No password given: the worker generates one, which the client reads
	// from the vault once.
	creds, err := c.CreateUser(ctx, "demo", client.CreateUserRequest{Username: "example_user"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("created %s with a generated password of %d characters\n", creds.Account.Username, creds.Password.Len())

	// The worker's answers are typed errors.
	_, err = c.CreateUser(ctx, "demo", client.CreateUserRequest{Username: "example_user"})
	fmt.Println("created again:", errors.Is(err, client.ErrUserExists))
	_, err = c.DeleteUser(ctx, "demo", client.DeleteUserRequest{Username: "example_owner"})
	fmt.Println("deleted the protected user:", errors.Is(err, client.ErrProtectedUser))

	accounts, err := c.ListUsers(ctx, "demo")
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range accounts {
		fmt.Printf("%s read-only=%t protected=%t\n", a.Username, a.ReadOnly, a.Protected)
	}

	if _, err := c.DeleteUser(ctx, "demo", client.DeleteUserRequest{Username: "example_user"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted example_user")
	// Output:
	// created example_user with a generated password of 64 characters
	// created again: true
	// deleted the protected user: true
	// example_owner read-only=false protected=true
	// example_user read-only=false protected=false
	// deleted example_user
}

// startExampleWorker runs an in-process nats-server and a worker with one
// target, "demo": a fresh database on the local MariaDB (the tests'
// server, see internal/mysqltest) whose protected user is example_owner.
func startExampleWorker() (natsURL string, stop func()) {
	rootDSN := mysqltest.RootDSN()
	cfg, err := mysql.ParseDSN(rootDSN)
	if err != nil {
		log.Fatal(err)
	}
	cfg.InterpolateParams = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		log.Fatal(err)
	}
	root := sql.OpenDB(conn)
	database := "dbu_example_" + mysqltest.Token(8)
	// The worker logs in as a least-privilege admin (contract §5.7): it
	// refuses an account with more, such as root.
	admin := cfg.Clone()
	admin.User, admin.Passwd = "example_admin", mysqltest.Password()
	for _, q := range []string{
		"DROP USER IF EXISTS example_owner@'%', example_user@'%', example_admin@'%'",
		"CREATE DATABASE `" + database + "`",
		"CREATE USER example_owner@'%' IDENTIFIED BY '" + mysqltest.Password() + "'",
		"GRANT ALL PRIVILEGES ON `" + database + "`.* TO example_owner@'%'",
		"CREATE USER example_admin@'%' IDENTIFIED BY '" + admin.Passwd + "'",
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO example_admin@'%'",
		"GRANT SELECT ON mysql.* TO example_admin@'%'",
		"GRANT ALL PRIVILEGES ON `" + mysqltest.EscapePattern(database) + "`.* TO example_admin@'%' WITH GRANT OPTION",
	} {
		if _, err := root.Exec(q); err != nil {
			log.Fatalf("MariaDB setup (see README): %v", err)
		}
	}
	dir, err := os.MkdirTemp("", "dbusers-example-")
	if err != nil {
		log.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: filepath.Join(dir, "nats"),
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server did not start")
	}
	wcfg := config.Default()
	wcfg.NATS.URL = ns.ClientURL()
	wcfg.Vault.XKeySeedFile = filepath.Join(dir, "worker.xk")
	wcfg.Targets = []config.Target{{Name: "demo", DSN: secret.New(admin.FormatDSN()), Database: database, ProtectedUsers: []string{"example_owner"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := service.Start(ctx, &wcfg, service.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return ns.ClientURL(), func() {
		_ = svc.Stop()
		ns.Shutdown()
		ns.WaitForShutdown()
		_, _ = root.Exec("DROP USER IF EXISTS example_owner@'%', example_user@'%', example_admin@'%'")
		_, _ = root.Exec("DROP DATABASE IF EXISTS `" + database + "`")
		_ = root.Close()
		_ = os.RemoveAll(dir)
	}
}
