package delivery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"

	"github.com/maxloyalty/notify/internal/store"
)

// engine is River's client whatever its database: River's client is generic
// over the driver's transaction type, and the queue is not.
type engine interface {
	start(ctx context.Context) error
	stop(ctx context.Context) error
	stopAndCancel(ctx context.Context) error
	stopped() <-chan struct{}
	insert(ctx context.Context, tx *store.Tx, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	completeDeliver(ctx context.Context, tx *store.Tx, job *river.Job[deliverArgs]) error
	completeWebhook(ctx context.Context, tx *store.Tx, job *river.Job[webhookArgs]) error
}

// riverEngine is River's client on driver D, whose transactions are TTx.
type riverEngine[TTx any, D riverdriver.Driver[TTx]] struct {
	client *river.Client[TTx]
	tx     func(*store.Tx) (TTx, bool)
}

func newRiverEngine[TTx any, D riverdriver.Driver[TTx]](driver D, cfg *river.Config, tx func(*store.Tx) (TTx, bool)) (engine, error) {
	c, err := river.NewClient[TTx](driver, cfg)
	if err != nil {
		return nil, err
	}
	return &riverEngine[TTx, D]{client: c, tx: tx}, nil
}

// newEngine builds River's client on the store's database.
func newEngine(st store.Store, cfg *river.Config) (engine, error) {
	switch s := st.(type) {
	case *store.SQLite:
		return newRiverEngine[*sql.Tx](riversqlite.New(s.RiverDB()), cfg, func(tx *store.Tx) (*sql.Tx, bool) { return tx.SQL(), tx.SQL() != nil })
	case *store.Postgres:
		return newRiverEngine[pgx.Tx](riverpgxv5.New(s.RiverPool()), cfg, func(tx *store.Tx) (pgx.Tx, bool) { return tx.PGX(), tx.PGX() != nil })
	}
	return nil, fmt.Errorf("delivery: no River driver for a %T store", st)
}

func (e *riverEngine[TTx, D]) start(ctx context.Context) error { return e.client.Start(ctx) }

func (e *riverEngine[TTx, D]) stop(ctx context.Context) error { return e.client.Stop(ctx) }

func (e *riverEngine[TTx, D]) stopAndCancel(ctx context.Context) error {
	return e.client.StopAndCancel(ctx)
}

func (e *riverEngine[TTx, D]) stopped() <-chan struct{} { return e.client.Stopped() }

var errNoTx = errors.New("delivery: the store's transaction is not of the queue's database")

func (e *riverEngine[TTx, D]) txOf(tx *store.Tx) (TTx, error) {
	t, ok := e.tx(tx)
	if !ok {
		return t, errNoTx
	}
	return t, nil
}

func (e *riverEngine[TTx, D]) insert(ctx context.Context, tx *store.Tx, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	t, err := e.txOf(tx)
	if err != nil {
		return nil, err
	}
	return e.client.InsertManyTx(ctx, t, params)
}

func (e *riverEngine[TTx, D]) completeDeliver(ctx context.Context, tx *store.Tx, job *river.Job[deliverArgs]) error {
	t, err := e.txOf(tx)
	if err != nil {
		return err
	}
	_, err = river.JobCompleteTx[D](ctx, t, job)
	return err
}

func (e *riverEngine[TTx, D]) completeWebhook(ctx context.Context, tx *store.Tx, job *river.Job[webhookArgs]) error {
	t, err := e.txOf(tx)
	if err != nil {
		return err
	}
	_, err = river.JobCompleteTx[D](ctx, t, job)
	return err
}
