package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
)

// startCheckTimeout bounds the start-up ping and privilege check of one
// target.
const startCheckTimeout = 5 * time.Second

// openTarget opens target i's pool, with its TLS configuration and password
// file applied, and checks its admin account's privileges (contract §5.7)
// when the server answers:
//
//   - excess privileges refuse the start (the error names the target, the
//     account, each excess and the REVOKE that fixes it), unless the
//     target sets allow_excess_privileges: then a warning names them;
//   - a target that does not answer is not fatal, as before: its jobs
//     retry, and the check runs before its first statement. An excess found
//     then is logged as an error, and each of the target's jobs fails with
//     an internal error naming it, until it is revoked (the check runs again
//     before every job while it fails) or the worker restarts with the
//     override. No job runs on the target before a check passed.
//   - shared lists the databases of the other targets that log in to the
//     same server as the same admin (config.SharedAdminDatabases): their
//     privileges are within §5.7 for this target too;
//   - a passed check holds for s.privilegeRecheck; then the next job or
//     /readyz runs it again, so an excess granted later is found.
func (s *Service) openTarget(ctx context.Context, i int, tc config.Target, shared []string) (*mysqlops.Target, error) {
	key := fmt.Sprintf("targets[%d]", i)
	var opts mysqlops.DBOptions
	if tc.TLS.Enabled() {
		tlsCfg, err := tc.TLS.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("%s.%w", key, err)
		}
		opts.TLS = tlsCfg
	}
	// Read once now, so that a missing or unreadable file stops the start
	// naming its key; then again before every new connection, so that a
	// rotated password needs no restart.
	if _, err := tc.AdminPassword(); err != nil {
		return nil, fmt.Errorf("%s.password_file: %w", key, err)
	}
	if tc.PasswordFile != "" {
		opts.PasswordSource = func() (secret.Secret, error) {
			pw, err := tc.AdminPassword()
			if err != nil {
				return secret.Secret{}, fmt.Errorf("%s.password_file: %w", key, err)
			}
			return pw, nil
		}
	}
	db, err := mysqlops.OpenDB(tc.DSN, opts)
	if err != nil {
		return nil, fmt.Errorf("%s.dsn: %w", key, err)
	}
	s.closers = append(s.closers, func() { db.Close() })

	log := s.log.With(zap.String("target", tc.Name))
	t := mysqlops.New(db, mysqlops.Options{
		Database:  tc.Database,
		Protected: tc.ProtectedUsers,
		Privileges: mysqlops.PrivilegeCheck{
			Enabled:         true,
			AllowExcess:     tc.AllowExcessPrivileges,
			SharedDatabases: shared,
			Recheck:         s.privilegeRecheck,
			Observe: func(rep mysqlops.PrivilegeReport, err error) {
				logPrivileges(log, rep, err)
			},
		},
	})
	pctx, cancel := context.WithTimeout(ctx, startCheckTimeout)
	defer cancel()
	if err := t.Ping(pctx); err != nil {
		log.Warn("cannot reach or log in to the target at start (see error); its jobs will retry, and run once it answers and its admin account's privileges are checked",
			zap.String("mysql", redactDSN(tc.DSN)), zap.Error(err))
		return t, nil
	}
	rep, err := t.VerifyPrivileges(pctx)
	var excess *mysqlops.ExcessError
	switch {
	case errors.As(err, &excess):
		return nil, fmt.Errorf("%s (%s): %w", key, tc.Name, err)
	case err != nil:
		log.Warn("cannot check the admin account's privileges at start; the target's jobs wait for the check",
			zap.String("mysql", redactDSN(tc.DSN)), zap.Error(err))
	default:
		logPrivileges(log, rep, nil)
	}
	return t, nil
}

// logPrivileges logs the outcome of a privilege check: err is nil or the
// *mysqlops.ExcessError that refuses the target.
func logPrivileges(log *zap.Logger, rep mysqlops.PrivilegeReport, err error) {
	var excess, fix []string
	for _, x := range rep.Excess {
		excess = append(excess, x.String())
		fix = append(fix, x.Fix...)
	}
	fields := []zap.Field{zap.String("account", rep.Account), zap.Strings("excess", excess), zap.Strings("fix", fix)}
	switch {
	case err != nil:
		log.Error("the target's admin account holds privileges beyond contract §5.7; its jobs fail until they are revoked (or allow_excess_privileges is set)",
			fields...)
	case len(excess) > 0:
		log.Warn("the target's admin account holds privileges beyond contract §5.7; allowed by allow_excess_privileges",
			fields...)
	default:
		log.Info("the target's admin account holds no privilege beyond contract §5.7", zap.String("account", rep.Account))
	}
}
