package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// maxLineBytes bounds one stdin line; a longer line is reported as too long
// and skipped without being held in memory. 4 bytes per allowed code point
// is the most a name within the limits can take.
func maxLineBytes(l predictor.Limits) int { return 4*l.WithDefaults().MaxChars + 2 }

func runPredict(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("predict", sys)
	var mf modelFlags
	mf.register(fs)
	marginals := fs.Bool("marginals", false, "add every token's marginal probability per label")
	nbest := fs.Int("nbest", 0, "add the next best label sequences (2..10)")
	var lim predictor.Limits
	fs.IntVar(&lim.MaxChars, "max-chars", predictor.DefaultLimits.MaxChars, "longest accepted name, in characters")
	fs.IntVar(&lim.MaxTokens, "max-tokens", predictor.DefaultLimits.MaxTokens, "most tokens accepted in a name")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *nbest < 0 || *nbest > 10 {
		return fmt.Errorf("%w: --nbest %d, want 0..10", errUsage, *nbest)
	}
	p, err := mf.load(ctx, sys, lim)
	if err != nil {
		return err
	}
	opt := predictor.Options{Marginals: *marginals, NBest: *nbest}
	out := bufio.NewWriterSize(sys.Stdout, 64<<10)
	var buf []byte
	emit := func(name string) error {
		buf = buf[:0]
		pred, err := p.PredictWith(name, opt)
		if err != nil {
			buf = appendErrorLine(buf, name, err)
		} else {
			buf = pred.AppendJSON(buf)
		}
		buf = append(buf, '\n')
		_, err = out.Write(buf)
		return err
	}
	if len(names) > 0 {
		for _, n := range names {
			if err := emit(n); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
		}
		return out.Flush()
	}
	in := bufio.NewReaderSize(sys.Stdin, 64<<10)
	limit := maxLineBytes(lim)
	for {
		if err := ctx.Err(); err != nil {
			out.Flush()
			return err
		}
		// Flush before a read that may block, so interactive use and pipes
		// that wait on our answer see it; bulk input stays buffered.
		if in.Buffered() == 0 {
			if err := out.Flush(); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
		}
		line, tooLong, err := readLine(in, limit)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading stdin: %w", err)
		}
		if line != nil || tooLong {
			var werr error
			if tooLong {
				buf = appendErrorLine(buf[:0], string(line), fmt.Errorf("%w: line longer than %d bytes", predictor.ErrTooLong, limit))
				buf = append(buf, '\n')
				_, werr = out.Write(buf)
			} else {
				werr = emit(string(line))
			}
			if werr != nil {
				return fmt.Errorf("writing output: %w", werr)
			}
		}
		if err != nil { // EOF
			return out.Flush()
		}
	}
}

// readLine returns the next line without its line ending. A line longer than
// limit is consumed and discarded: tooLong is set and line holds its first
// bytes. line is nil at EOF with nothing read.
func readLine(r *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	var acc []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(acc)+len(chunk) > limit+1 { // +1: the newline itself
			if !tooLong {
				acc = append(acc, chunk[:min(len(chunk), 64)]...)
				tooLong = true
			}
		} else if !tooLong {
			acc = append(acc, chunk...)
		}
		switch {
		case err == nil:
			return trimEOL(acc), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(acc) == 0 && !tooLong {
				return nil, false, io.EOF
			}
			return trimEOL(acc), tooLong, io.EOF
		default:
			return nil, false, err
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if b == nil {
		b = []byte{}
	}
	return b
}

// appendErrorLine writes {"mask_name": …, "error": …}.
func appendErrorLine(b []byte, name string, err error) []byte {
	b = append(b, `{"mask_name":`...)
	b = predictor.AppendJSONString(b, name)
	b = append(b, `,"error":`...)
	b = predictor.AppendJSONString(b, err.Error())
	return append(b, '}')
}
