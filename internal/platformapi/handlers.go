package platformapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/secret"
)

// Users is what the API needs of the dbusers client.
type Users interface {
	ListUsersPage(ctx context.Context, target string, req client.ListPageRequest) (client.ListPage, error)
	CreateUser(ctx context.Context, target string, req client.CreateUserRequest) (client.Credentials, error)
	ResetPassword(ctx context.Context, target string, req client.ResetPasswordRequest) (client.Credentials, error)
	DeleteUser(ctx context.Context, target string, req client.DeleteUserRequest) (client.Account, error)
}

var _ Users = (*client.Client)(nil)

// newJobID names a job the API sends; it is chosen here rather than by the
// client so that a 504 can name it.
func newJobID() string { return "api-" + rand.Text() }

// jobContext bounds one request's wait for the worker by the configured
// timeout. It does not end when the caller hangs up: the job runs anyway,
// and waiting for its result lets the client purge a generated password
// from the vault instead of leaving it there until its TTL.
func (s *Server) jobContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
}

// list follows every page of the list job (GET …/users).
func (s *Server) list(w http.ResponseWriter, r *http.Request, target string) {
	ctx, cancel := s.jobContext(r)
	defer cancel()
	users := []userJSON{}
	after := ""
	for {
		o := op{kind: "list", jobID: newJobID(), timeout: s.timeout}
		noteJob(r, o.jobID)
		page, err := s.users.ListUsersPage(ctx, target, client.ListPageRequest{After: after, JobID: o.jobID})
		if err != nil {
			s.fail(w, r, fromWorker(err, o), err)
			return
		}
		for _, a := range page.Accounts {
			users = append(users, toUserJSON(a))
		}
		if page.Next == "" {
			break
		}
		if page.Next == after {
			err := fmt.Errorf("list of target %q: the cursor did not move past %q", target, after)
			s.fail(w, r, fromWorker(err, o), err)
			return
		}
		after = page.Next
	}
	writeJSON(w, http.StatusOK, usersResponse{DatabaseUsers: users})
}

// create makes a user (POST …/users).
func (s *Server) create(w http.ResponseWriter, r *http.Request, databaseID, target string) {
	var body createBody
	if err := decodeBody(r, &body, false); err != nil {
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request", "%s", err), nil)
		return
	}
	u := body.DatabaseUser
	if u == nil {
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request", `the body has no "database_user" object`), nil)
		return
	}
	if u.DatabaseID != nil && *u.DatabaseID != databaseID {
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request", "database_user.database_id is not the database of the URL"), nil)
		return
	}
	name := deref(u.Name)
	password, confirmation := deref(u.Password), deref(u.PasswordConfirmation)
	if password != confirmation {
		s.fail(w, r, fieldError("password", "confirmation", "The password confirmation does not match the password"), nil)
		return
	}
	o := op{kind: "create", name: name, generated: password == "", jobID: newJobID(), timeout: s.timeout}
	noteJob(r, o.jobID)
	ctx, cancel := s.jobContext(r)
	defer cancel()
	creds, err := s.users.CreateUser(ctx, target, client.CreateUserRequest{
		Username: name, ReadOnly: deref(u.ReadOnly), Password: secret.New(password), JobID: o.jobID,
	})
	if err != nil {
		s.fail(w, r, fromWorker(err, o), err)
		return
	}
	out := toUserJSON(creds.Account)
	if !creds.Password.IsZero() {
		out.Password = creds.Password.Reveal()
	}
	writeJSON(w, http.StatusCreated, userResponse{DatabaseUser: out})
}

// update sets a chosen password (PATCH …/users/{name}).
func (s *Server) update(w http.ResponseWriter, r *http.Request, databaseID, target string) {
	var body updateBody
	if err := decodeBody(r, &body, false); err != nil {
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request", "%s", err), nil)
		return
	}
	u := body.DatabaseUser
	if u == nil {
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request", `the body has no "database_user" object`), nil)
		return
	}
	if u.DatabaseID != nil && *u.DatabaseID != databaseID {
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request", "database_user.database_id is not the database of the URL"), nil)
		return
	}
	password := deref(u.Password)
	if password == "" {
		// A PATCH changes nothing else: without a password it is a mistake,
		// and a generated password is reset_password's.
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request",
			"the body has no database_user.password; to have one generated, POST to …/reset_password"), nil)
		return
	}
	if password != deref(u.PasswordConfirmation) {
		s.fail(w, r, fieldError("password", "confirmation", "The password confirmation does not match the password"), nil)
		return
	}
	name := r.PathValue("name")
	o := op{kind: "update", name: name, jobID: newJobID(), timeout: s.timeout}
	noteJob(r, o.jobID)
	ctx, cancel := s.jobContext(r)
	defer cancel()
	creds, err := s.users.ResetPassword(ctx, target, client.ResetPasswordRequest{Username: name, Password: secret.New(password), JobID: o.jobID})
	if err != nil {
		s.fail(w, r, fromWorker(err, o), err)
		return
	}
	writeJSON(w, http.StatusOK, userResponse{DatabaseUser: toUserJSON(creds.Account)})
}

// reset generates a new password (POST …/users/{name}/reset_password).
func (s *Server) reset(w http.ResponseWriter, r *http.Request, target string) {
	if err := decodeBody(r, &resetBody{}, true); err != nil {
		s.fail(w, r, simple(http.StatusBadRequest, "bad_request", "%s; reset_password takes no body, or {}", err), nil)
		return
	}
	name := r.PathValue("name")
	o := op{kind: "reset", name: name, generated: true, jobID: newJobID(), timeout: s.timeout}
	noteJob(r, o.jobID)
	ctx, cancel := s.jobContext(r)
	defer cancel()
	creds, err := s.users.ResetPassword(ctx, target, client.ResetPasswordRequest{Username: name, JobID: o.jobID})
	if err != nil {
		s.fail(w, r, fromWorker(err, o), err)
		return
	}
	if creds.Password.IsZero() {
		err := fmt.Errorf("job %s: the worker generated no password", o.jobID)
		s.fail(w, r, fromWorker(err, o), err)
		return
	}
	out := toUserJSON(creds.Account)
	out.Password = creds.Password.Reveal()
	writeJSON(w, http.StatusOK, userResponse{DatabaseUser: out})
}

// remove deletes a user (DELETE …/users/{name}).
func (s *Server) remove(w http.ResponseWriter, r *http.Request, target string) {
	name := r.PathValue("name")
	o := op{kind: "delete", name: name, jobID: newJobID(), timeout: s.timeout}
	noteJob(r, o.jobID)
	ctx, cancel := s.jobContext(r)
	defer cancel()
	if _, err := s.users.DeleteUser(ctx, target, client.DeleteUserRequest{Username: name, JobID: o.jobID}); err != nil {
		s.fail(w, r, fromWorker(err, o), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
