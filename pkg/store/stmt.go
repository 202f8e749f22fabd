package store

import (
	"context"
	"database/sql"
)

// maxCachedStmts bounds the prepared-statement cache; queries beyond it (SQL
// built at run time) are run unprepared.
const maxCachedStmts = 512

// SQLite spends most of a small write parsing its SQL, and handlers run the
// same few statements for every message, so statements run through a Tx are
// prepared once on the writer connection and reused. A statement cannot be
// prepared on the writer while a transaction holds it (the pool has one
// connection), so a statement first seen inside a transaction runs
// unprepared there and is prepared right after the transaction ends.

// cached returns the prepared statement for query, if there is one.
func (d *DB) cached(query string) *sql.Stmt {
	d.stmtMu.Lock()
	defer d.stmtMu.Unlock()
	return d.stmts[query]
}

// prepare prepares queries on the writer; call it with no transaction open
// on this goroutine. A failure only means the query stays unprepared.
func (d *DB) prepare(ctx context.Context, queries []string) {
	for _, q := range queries {
		d.stmtMu.Lock()
		_, have := d.stmts[q]
		full := len(d.stmts) >= maxCachedStmts
		d.stmtMu.Unlock()
		if have || full {
			continue
		}
		st, err := d.w.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		d.stmtMu.Lock()
		if _, have := d.stmts[q]; have {
			st.Close()
		} else {
			d.stmts[q] = st
		}
		d.stmtMu.Unlock()
	}
}

// stmt returns the transaction's handle on query's prepared statement, or
// nil (and notes the query for preparing) when it is not prepared yet.
func (tx *Tx) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := tx.db.cached(query); st != nil {
		return tx.Tx.StmtContext(ctx, st)
	}
	tx.unprepared = append(tx.unprepared, query)
	return nil
}

// ExecContext runs query in the transaction, prepared when possible.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := tx.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

// QueryContext runs query in the transaction, prepared when possible.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := tx.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query in the transaction, prepared when possible.
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := tx.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}
