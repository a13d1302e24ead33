package client

import (
	"context"

	"github.com/dbusers/dbusers/wire"
)

// ListPageRequest asks for one page of a target's accounts.
type ListPageRequest struct {
	// After is the cursor: the page starts after this username; "" for the
	// first page.
	After string
	// Limit is the page size, 1 to 5000; 0 is the client's page size
	// (WithListPageSize).
	Limit int
	// JobID is the list job's id; empty: a random one. A caller that must
	// name the job when no result came (an HTTP 504) sets it.
	JobID string
}

// ListPage is one page of a target's accounts, sorted by username.
type ListPage struct {
	Accounts []Account
	// Next is the cursor of the next page; "" on the last page.
	Next string
}

// ListUsersPage runs one list job and returns its page. ListUsers follows
// the cursor itself; this is for callers that need each job's id.
func (c *Client) ListUsersPage(ctx context.Context, target string, req ListPageRequest) (ListPage, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := CheckTarget(target); err != nil {
		return ListPage{}, err
	}
	id := req.JobID
	if id == "" {
		id = newJobID()
	} else if err := checkJobID(id); err != nil {
		return ListPage{}, err
	}
	limit := req.Limit
	if limit == 0 {
		limit = c.pageSize
	}
	res, _, err := c.run(ctx, target, wire.OpList, jobBody{ID: id, After: req.After, Limit: limit})
	if err != nil {
		return ListPage{}, err
	}
	page := ListPage{Accounts: make([]Account, 0, len(res.Users)), Next: res.Next}
	for _, u := range res.Users {
		page.Accounts = append(page.Accounts, Account(u))
	}
	return page, nil
}
