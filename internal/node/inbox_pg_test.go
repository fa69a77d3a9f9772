package node_test

// End-to-end tests of the durable inbox (InboxService, the stream's unread
// count, mutes) over real sockets on 127.0.0.1, on the embedded SQLite
// store and, when NOTIFY_TEST_POSTGRES_DSN is set, on PostgreSQL.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// ---- PostgreSQL ----

// postgresStore returns a DSN for a fresh schema of the server named by
// NOTIFY_TEST_POSTGRES_DSN, dropped when the test ends. Without the
// variable the test is skipped, except in CI (CI=true) where it fails.
func postgresStore(t *testing.T) string {
	t.Helper()
	dsn := testenv.Service(t, testenv.PostgresDSN)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "notify_node_test_" + hex.EncodeToString(b[:])
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// A key=value DSN.
		return dsn + " search_path=" + schema
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestInboxPostgres runs the inbox scenarios, and a restart, with
// PostgreSQL as the node's store.
func TestInboxPostgres(t *testing.T) {
	t.Parallel()
	for _, sc := range inboxScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dsn := postgresStore(t)
			sc.run(t, startNode(t, func(c *node.Config) { c.Store = dsn }))
		})
	}
	t.Run("Restart", func(t *testing.T) {
		t.Parallel()
		dsn := postgresStore(t)
		scenarioRestart(t, func(c *node.Config) { c.Store = dsn })
	})
	t.Run("NoDataDirFile", func(t *testing.T) {
		t.Parallel()
		// With a DSN, the node keeps nothing in its data directory.
		dsn := postgresStore(t)
		dir := t.TempDir()
		n := startNode(t, func(c *node.Config) { c.Store = dsn; c.DataDir = dir })
		ctx := inboxCtx(t)
		c, ib := dialInbox(t, n.GRPCAddr())
		pub := publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 1)))
		if got := eventIDs(listAll(t, ctx, ib, mint(t, guestClaims), nil).Notifications); !slices.Equal(got, []string{pub.EventId}) {
			t.Errorf("inbox %v, want [%s]", got, pub.EventId)
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
			t.Errorf("data dir holds %v (%v), want nothing with a PostgreSQL store", entries, err)
		}
	})
}
