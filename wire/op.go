package wire

// Op is a job operation as it appears in results: "user.create",
// "user.reset_password", "user.delete", "user.list",
// "user.discard_old_password".
type Op string

// The operations a job subject can name.
const (
	OpCreate        Op = "user.create"
	OpResetPassword Op = "user.reset_password"
	OpDelete        Op = "user.delete"
	OpList          Op = "user.list"
	// OpDiscardOldPassword ends the old password a reset with
	// keep_old_for retained.
	OpDiscardOldPassword Op = "user.discard_old_password"
)

// Page sizes of a list job.
const (
	// DefaultLimit is the page size of a list job that gives no limit.
	DefaultLimit = 1000
	// MaxLimit is the largest page size a list job may ask for.
	MaxLimit = 5000
)

// AllOps returns every operation a job can name.
func AllOps() []Op {
	return []Op{OpCreate, OpResetPassword, OpDelete, OpList, OpDiscardOldPassword}
}
