package node_test

// End-to-end tests of the durable inbox (InboxService, the stream's unread
// count, mutes) over real sockets on 127.0.0.1, on the embedded SQLite
// store and, when NOTIFY_TEST_POSTGRES_DSN is set, on PostgreSQL.

import (
	"os"
	"slices"
	"testing"

	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// ---- PostgreSQL ----

// postgresStore is testenv.PostgresSchema. It stays as a thin wrapper
// only because inbox_states_test.go also calls it by this name; new tests
// call testenv.PostgresSchema.
func postgresStore(t *testing.T) string {
	t.Helper()
	return testenv.PostgresSchema(t)
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
