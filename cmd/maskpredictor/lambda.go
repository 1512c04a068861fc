package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/aws/aws-lambda-go/lambda"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// runLambda is `maskpredictor lambda`: the AWS Lambda function (custom
// runtime provided.al2023, the binary named bootstrap; deploy/lambda/build.sh
// builds the zip). It answers the event shapes of the Python function, the
// same as POST /invoke: {"mask_name"}, {"mask_names"}, an API Gateway proxy
// event {"body": "…"}, each with {"statusCode","headers","body"}.
//
// The model is loaded once per cold start: MODEL_URI (a file in the zip,
// such as /var/task/model.bin, or s3://bucket/key, read with the function's
// role), else the embedded model; the rule fallback when it cannot load.
func runLambda(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("lambda", sys)
	var mf modelFlags
	mf.register(fs)
	var lim predictor.Limits
	fs.IntVar(&lim.MaxChars, "max-chars", predictor.DefaultLimits.MaxChars, "longest accepted name, in characters")
	fs.IntVar(&lim.MaxTokens, "max-tokens", predictor.DefaultLimits.MaxTokens, "most tokens accepted in a name")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if sys.Env("AWS_LAMBDA_RUNTIME_API") == "" {
		return fmt.Errorf("%w: AWS_LAMBDA_RUNTIME_API is not set: `maskpredictor lambda` runs inside AWS Lambda "+
			"(locally, `maskpredictor serve` answers the same events on POST /invoke)", errUsage)
	}
	log := logger(sys)
	defer log.Sync() //nolint:errcheck // stderr
	l, err := mf.loadFull(ctx, sys, lim)
	if err != nil {
		return err
	}
	handler, err := lambdaHandler(l.live, lim, log)
	if err != nil {
		return err
	}
	fields := []zap.Field{zap.String("model", l.source), zap.String("model_version", l.live.Version())}
	if l.fallback != "" {
		fields = append(fields, zap.String("fallback_reason", l.fallback))
	}
	log.Info("lambda function ready", fields...)
	// Start does not return: the runtime loop ends when Lambda stops the
	// sandbox.
	lambda.StartWithOptions(handler, lambda.WithContext(ctx))
	return nil
}

// lambdaHandler answers one invocation with httpapi's Lambda event
// handling (shared with POST /invoke). Every answer, bad input included,
// is an API Gateway-shaped response: a function error is never returned,
// so callers always see {"statusCode", "headers", "body"}, as before.
func lambdaHandler(p httpapi.Predictor, lim predictor.Limits, log *zap.Logger) (func(context.Context, json.RawMessage) (httpapi.LambdaResponse, error), error) {
	eng, err := httpapi.NewEngine(httpapi.EngineConfig{Predictor: p, Limits: lim, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("lambda handler: %w", err)
	}
	return func(ctx context.Context, event json.RawMessage) (httpapi.LambdaResponse, error) {
		resp, err := eng.Invoke(ctx, event)
		if err != nil {
			log.Error("invocation failed", zap.Int("status", resp.StatusCode), zap.Error(err))
		}
		return resp, nil
	}, nil
}

// lambdaArgs are the arguments to run with: Lambda starts the custom
// runtime's executable, named bootstrap, without arguments, so that name
// (or, with no arguments, the Lambda runtime API in the environment) means
// `maskpredictor lambda`.
func lambdaArgs(argv0 string, args []string, getenv func(string) string) []string {
	if len(args) == 0 && (filepath.Base(argv0) == "bootstrap" || getenv("AWS_LAMBDA_RUNTIME_API") != "") {
		return []string{"lambda"}
	}
	return args
}
