package rolling

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/mattn/go-sqlite3"

	"tandem/backend/domain"
)

// Job states.
const (
	JobRunning   = "running"
	JobCompleted = "completed"
	JobFailed    = "failed"
)

// Step states.
const (
	StepPending  = "pending"
	StepStopping = "stopping"
	StepStarting = "starting"
	StepWaiting  = "waiting" // for failback and every session to have a backup
	StepDone     = "done"
	StepFailed   = "failed"
)

// Job types.
const (
	TypeRollingRestart = "rolling-restart"
	TypeDeploy         = "deploy"
)

// Deploy is what a deploy job moves the cluster to, one server at a time,
// and what it ran before (a failed step goes back to it).
type Deploy struct {
	Application     string `json:"application"`
	Version         string `json:"version"`
	Kind            string `json:"kind"` // domain.AppProcess: switched in place; domain.AppGo: the server restarts
	FromApplication string `json:"from_application"`
	FromVersion     string `json:"from_version"`
	FromKind        string `json:"from_kind"`
	Rollback        bool   `json:"rollback,omitempty"` // back to what ran before (POST /clusters/{name}/rollback)
}

// Job is a rolling restart as GET /api/v1/jobs/{id} shows it.
type Job struct {
	ID                 int64    `json:"id"`
	Type               string   `json:"type"`
	Cluster            string   `json:"cluster"`
	State              string   `json:"state"`
	Actor              string   `json:"actor"`
	StepTimeoutSeconds int      `json:"step_timeout_seconds"`
	Order              []string `json:"order"`
	Current            string   `json:"current,omitempty"`
	// Step is the 1-based number of the step in progress (Current) or of
	// the step the job failed at; len(Steps) once completed.
	Step int `json:"step"`
	// Resumes counts how often the job was resumed at an admin server's
	// start after that server stopped (or was killed) during the job.
	Resumes int    `json:"resumes"`
	Steps   []Step `json:"steps"`
	Error   string `json:"error,omitempty"`
	// Deploy is set for a deploy job.
	Deploy     *Deploy    `json:"deploy,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`

	// eventMark is the newest event ID before the current step stopped its
	// server (jobs.step_event_mark): a resumed step checks failback from it.
	eventMark int64
}

// derive fills the fields computed from the others.
func (j *Job) derive() {
	j.Order = make([]string, 0, len(j.Steps))
	j.Step = 0
	for i, s := range j.Steps {
		j.Order = append(j.Order, s.Server)
		if s.Server == j.Current && j.Current != "" {
			j.Step = i + 1
		}
	}
	if j.State == JobCompleted {
		j.Step = len(j.Steps)
	}
}

// Step is one server's restart within a job.
type Step struct {
	Server         string     `json:"server"`
	State          string     `json:"state"`
	PIDBefore      int        `json:"pid_before,omitempty"` // before the stop
	PID            int        `json:"pid,omitempty"`        // after the start
	SessionsBefore int        `json:"sessions_before"`      // primary sessions before the stop
	SessionsAfter  int        `json:"sessions_after"`       // primary sessions once the step ended
	StartedAt      *time.Time `json:"started_at,omitempty"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	Error          string     `json:"error,omitempty"`
	Note           string     `json:"note,omitempty"`
}

// jobs is the jobs table (migrations/002_jobs.sql, 003_job_resume.sql).
type jobs struct{ db *sql.DB }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func (j jobs) create(ctx context.Context, job Job) (Job, error) {
	steps, err := json.Marshal(job.Steps)
	if err != nil {
		return job, fmt.Errorf("rolling: encode steps: %w", err)
	}
	deploy := ""
	if job.Deploy != nil {
		b, _ := json.Marshal(job.Deploy) // strings: cannot fail
		deploy = string(b)
	}
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return job, fmt.Errorf("rolling: create job: %w", err)
	}
	defer tx.Rollback()
	var running int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE cluster = ? AND state = 'running'`, job.Cluster).Scan(&running); err != nil {
		return job, fmt.Errorf("rolling: create job: %w", err)
	}
	if running > 0 { // a rolling restart and a deploy never run together either
		return job, domain.Conflict("cluster", "a job (rolling restart or deploy) of cluster %q is already running", job.Cluster)
	}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO jobs (type, cluster, state, actor, step_timeout_ms, steps, current, error, created_at, updated_at, deploy)
		 VALUES (?, ?, ?, ?, ?, ?, '', '', ?, ?, ?)`,
		job.Type, job.Cluster, job.State, job.Actor, int64(job.StepTimeoutSeconds)*1000, string(steps), ms(job.CreatedAt), ms(job.UpdatedAt), deploy)
	if err != nil {
		var se sqlite3.Error
		if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique {
			return job, domain.Conflict("cluster", "a job of cluster %q is already running", job.Cluster)
		}
		return job, fmt.Errorf("rolling: create job: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return job, fmt.Errorf("rolling: create job: %w", err)
	}
	job.ID, err = res.LastInsertId()
	if err != nil {
		return job, fmt.Errorf("rolling: create job: %w", err)
	}
	return job, nil
}

func (j jobs) update(ctx context.Context, job Job) error {
	steps, err := json.Marshal(job.Steps)
	if err != nil {
		return fmt.Errorf("rolling: encode steps: %w", err)
	}
	var fin sql.NullInt64
	if job.FinishedAt != nil {
		fin = sql.NullInt64{Int64: ms(*job.FinishedAt), Valid: true}
	}
	_, err = j.db.ExecContext(ctx,
		`UPDATE jobs SET state = ?, steps = ?, current = ?, error = ?, updated_at = ?, finished_at = ?, resumes = ?, step_event_mark = ? WHERE id = ?`,
		job.State, string(steps), job.Current, job.Error, ms(job.UpdatedAt), fin, job.Resumes, job.eventMark, job.ID)
	if err != nil {
		return fmt.Errorf("rolling: update job %d: %w", job.ID, err)
	}
	return nil
}

const jobColumns = `id, type, cluster, state, actor, step_timeout_ms, steps, current, error, created_at, updated_at, finished_at, resumes, step_event_mark, deploy`

// scanJob reads one row of jobColumns.
func scanJob(row interface{ Scan(...any) error }) (Job, error) {
	var (
		job           Job
		stepTimeoutMS int64
		steps         string
		created, upd  int64
		fin           sql.NullInt64
		deploy        string
	)
	if err := row.Scan(&job.ID, &job.Type, &job.Cluster, &job.State, &job.Actor, &stepTimeoutMS, &steps, &job.Current, &job.Error,
		&created, &upd, &fin, &job.Resumes, &job.eventMark, &deploy); err != nil {
		return job, err
	}
	if deploy != "" {
		job.Deploy = &Deploy{}
		if err := json.Unmarshal([]byte(deploy), job.Deploy); err != nil {
			return job, fmt.Errorf("rolling: job %d deploy: %w", job.ID, err)
		}
	}
	if err := json.Unmarshal([]byte(steps), &job.Steps); err != nil {
		return job, fmt.Errorf("rolling: job %d steps: %w", job.ID, err)
	}
	job.StepTimeoutSeconds = int(stepTimeoutMS / 1000)
	job.CreatedAt, job.UpdatedAt = fromMS(created), fromMS(upd)
	if fin.Valid {
		t := fromMS(fin.Int64)
		job.FinishedAt = &t
	}
	job.derive()
	return job, nil
}

func (j jobs) get(ctx context.Context, id int64) (Job, error) {
	job, err := scanJob(j.db.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return job, domain.NotFound("job", fmt.Sprint(id))
	}
	if err != nil {
		return job, fmt.Errorf("rolling: job %d: %w", id, err)
	}
	return job, nil
}

// running lists the jobs left running, oldest first: at a Roller's start,
// those a previous admin process did not finish.
func (j jobs) running(ctx context.Context) ([]Job, error) {
	rows, err := j.db.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE state = 'running' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("rolling: running jobs: %w", err)
	}
	defer rows.Close()
	var out []Job
	for rows.Next() {
		job, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("rolling: running jobs: %w", err)
		}
		out = append(out, job)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rolling: running jobs: %w", err)
	}
	return out, nil
}

// MaxJobsPage bounds one page of ListJobs.
const MaxJobsPage = 1000

// ListJobs returns jobs newest first from the jobs table of db (the
// store's database): at most limit (1 to MaxJobsPage; 0: 50) with ids
// below beforeID when it is above 0. It needs no Roller: finished jobs
// stay in the table.
func ListJobs(ctx context.Context, db *sql.DB, beforeID int64, limit int) ([]Job, error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, MaxJobsPage)
	if beforeID <= 0 {
		beforeID = math.MaxInt64
	}
	rows, err := db.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id < ? ORDER BY id DESC LIMIT ?`, beforeID, limit)
	if err != nil {
		return nil, fmt.Errorf("rolling: list jobs: %w", err)
	}
	defer rows.Close()
	out := []Job{}
	for rows.Next() {
		job, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("rolling: list jobs: %w", err)
		}
		out = append(out, job)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rolling: list jobs: %w", err)
	}
	return out, nil
}
