package store

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// rows is the part of *sql.Rows and pgx.Rows the store uses.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// dbtx runs statements on a pool or inside a transaction.
type dbtx interface {
	// exec runs a statement and returns the number of rows it affected.
	exec(ctx context.Context, query string, args ...any) (int64, error)
	// query runs a statement returning rows; the caller closes them.
	query(ctx context.Context, query string, args ...any) (rows, error)
}

// timeDest receives a scanned timestamp column.
type timeDest interface {
	// dest is the value to pass to Scan.
	dest() any
	// value returns the scanned time in UTC.
	value() time.Time
}

// engine is what differs between the SQLite and PostgreSQL implementations;
// core holds everything else, including all of the SQL, written in the
// dialect both databases accept.
type engine interface {
	// reader runs read-only statements outside a transaction.
	reader() dbtx
	// inTx runs fn in a write transaction, committing when fn returns nil
	// and rolling back otherwise.
	inTx(ctx context.Context, fn func(tx dbtx) error) error
	// lockMigrations serialises schema migrations across processes; it is
	// called first in each migration transaction.
	lockMigrations(ctx context.Context, tx dbtx) error
	// timeArg converts a time for a timestamp column.
	timeArg(t time.Time) any
	// newTimeDest returns a destination for scanning a timestamp column.
	newTimeDest() timeDest
	// newNullTimeDest returns a destination for scanning a nullable
	// timestamp column; NULL scans as the zero time.
	newNullTimeDest() timeDest
	// classify wraps driver errors in ErrUnavailable or ErrInvalid where
	// they mean that, and returns other errors unchanged.
	classify(err error) error
}

// dialect holds the textual differences between the two SQL dialects.
type dialect struct {
	// dollar selects $N placeholders and array parameters (PostgreSQL)
	// instead of ?N placeholders and expanded lists (SQLite).
	dollar bool
	// rowLock is appended to a SELECT over "inbox_items i" to lock the
	// selected items until the transaction ends.
	rowLock string
	// tsType is the type of timestamp columns, for casts.
	tsType string
}

// qb builds one statement's argument list.
type qb struct {
	d    dialect
	args []any
}

// arg adds a value and returns its placeholder.
func (b *qb) arg(v any) string {
	b.args = append(b.args, v)
	n := strconv.Itoa(len(b.args))
	if b.d.dollar {
		return "$" + n
	}
	return "?" + n
}

// inStrings returns the condition "col is one of vals"; vals is not empty.
func (b *qb) inStrings(col string, vals []string) string {
	if b.d.dollar {
		return col + " = ANY(" + b.arg(vals) + "::text[])"
	}
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = b.arg(v)
	}
	return col + " IN (" + strings.Join(ph, ", ") + ")"
}

// inInts returns the condition "col is one of vals"; vals is not empty.
func (b *qb) inInts(col string, vals []int64) string {
	if b.d.dollar {
		return col + " = ANY(" + b.arg(vals) + "::bigint[])"
	}
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = b.arg(v)
	}
	return col + " IN (" + strings.Join(ph, ", ") + ")"
}

// boolLit returns the SQL literal for v, which both dialects accept.
func boolLit(v bool) string {
	if v {
		return "TRUE"
	}
	return "FALSE"
}
