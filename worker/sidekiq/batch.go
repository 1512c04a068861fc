package sidekiq

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// BatchTaskType is the asynq task type of a task that carries several Sidekiq jobs
// (BridgeConfig.JobsPerTask > 1). Its payload is EncodeBatch of the jobs' exact bytes.
//
// Why batches: asynq's own bookkeeping (enqueue, dequeue, lease, completion with
// Retention) costs about 20 Redis commands and 3 round trips per task whatever the task
// does; one task per prediction job spent most of the worker's and Redis' time there.
// Each job of a batch keeps its own identity: its delivery id (DeliveryID), its done
// marker, its log line, its Busy-page entry and its dead-set entry. A batch that fails
// for a transient reason is split into single-job tasks, so Sidekiq's per-job retry
// setting applies as before.
const BatchTaskType = "sidekiq:mask_prediction_batch"

// batchMagic starts every batch payload: readable in asynqmon, versioned.
const batchMagic = "mpbatch1\n"

// ErrBatchFormat is wrapped by DecodeBatch's errors.
var ErrBatchFormat = errors.New("malformed batch payload")

// EncodeBatch frames raw job payloads for one batch task: the magic line, then for each
// job its length in decimal, ':', the exact bytes and '\n' (a netstring). The bytes are
// kept exactly, so a job's delivery id, dead-set entry and return to its queue are those
// of the job Rails pushed.
func EncodeBatch(raws [][]byte) []byte {
	n := len(batchMagic)
	for _, r := range raws {
		n += len(r) + 12
	}
	b := make([]byte, 0, n)
	b = append(b, batchMagic...)
	for _, r := range raws {
		b = strconv.AppendInt(b, int64(len(r)), 10)
		b = append(b, ':')
		b = append(b, r...)
		b = append(b, '\n')
	}
	return b
}

// DecodeBatch splits a payload made by EncodeBatch. The returned slices alias p.
func DecodeBatch(p []byte) ([][]byte, error) {
	if !bytes.HasPrefix(p, []byte(batchMagic)) {
		return nil, fmt.Errorf("%w: missing %q header", ErrBatchFormat, batchMagic[:len(batchMagic)-1])
	}
	rest := p[len(batchMagic):]
	var raws [][]byte
	for len(rest) > 0 {
		colon := bytes.IndexByte(rest, ':')
		if colon < 1 || colon > 10 {
			return nil, fmt.Errorf("%w: job %d: no length prefix", ErrBatchFormat, len(raws))
		}
		n, err := strconv.Atoi(string(rest[:colon]))
		if err != nil || n < 0 || (colon > 1 && rest[0] == '0') {
			return nil, fmt.Errorf("%w: job %d: bad length %q", ErrBatchFormat, len(raws), rest[:colon])
		}
		rest = rest[colon+1:]
		if n >= len(rest) || rest[n] != '\n' {
			return nil, fmt.Errorf("%w: job %d: %d bytes announced, %d left", ErrBatchFormat, len(raws), n, len(rest))
		}
		raws = append(raws, rest[:n:n])
		rest = rest[n+1:]
	}
	if len(raws) == 0 {
		return nil, fmt.Errorf("%w: no jobs", ErrBatchFormat)
	}
	return raws, nil
}

// BatchTaskID is the asynq task id of a batch: derived from its jobs' delivery ids, so
// handing the same jobs over again in the same grouping (a crash between the enqueue and
// the removal from the in-flight list) is refused by asynq as a conflict. A different
// grouping after a crash runs the jobs again; their done markers keep callbacks and
// replies exactly-once.
func BatchTaskID(jobs []*Job) string {
	h := sha256.New()
	for _, j := range jobs {
		h.Write([]byte(j.TaskID()))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return "batch-" + strconv.Itoa(len(jobs)) + "-" + hex.EncodeToString(sum[:12])
}
