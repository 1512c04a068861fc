package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/maskpredictor/maskpredictor/predictor"
)

// LambdaResponse is what the AWS Lambda function returned: an API Gateway
// proxy response whose body is a JSON string.
type LambdaResponse struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

// lambdaHeaders are the headers the Lambda sent with its answers.
func lambdaHeaders() map[string]string {
	return map[string]string{
		"Content-Type":                "application/json",
		"Access-Control-Allow-Origin": "*",
	}
}

// Error messages of the Lambda function, kept for its callers.
const (
	lambdaMsgInvalidBody = "Invalid JSON in body"
	lambdaMsgNotArray    = "mask_names must be an array"
	lambdaMsgMissing     = "Missing required parameter: mask_name or mask_names"
	lambdaMsgNotObject   = "event must be a JSON object"
)

// HandleInvoke answers one Lambda event with p, without a cache: the
// entry point of `maskpredictor lambda` and of POST /invoke. The event shapes
// are those the Python Lambda accepted:
//
//	{"mask_name": "…"}                 → body: the prediction
//	{"mask_names": ["…", …]}           → body: {"predictions": […]}
//	{"body": "<one of the above>"}     (API Gateway; "isBase64Encoded" honoured;
//	                                    body may also be an object)
//
// Bad input is a response with statusCode 400 and body {"error": "…"}. The
// error is non-nil only for a failure that is not the caller's (the
// response then has statusCode 500); it is for logging.
func HandleInvoke(ctx context.Context, p Predictor, event []byte) (LambdaResponse, error) {
	e, err := NewEngine(EngineConfig{Predictor: p})
	if err != nil {
		return lambdaError(http.StatusInternalServerError, "internal error"), err
	}
	return e.Invoke(ctx, event)
}

// Invoke is HandleInvoke with the engine's cache and metrics.
func (e *Engine) Invoke(ctx context.Context, event []byte) (LambdaResponse, error) {
	body, resp, ok := lambdaBody(event)
	if !ok {
		return resp, nil
	}
	if raw, ok := body["mask_names"]; ok {
		var names []string
		if err := decodeStrings(raw, &names); err != nil {
			var ie *InputError
			if errors.As(err, &ie) {
				return lambdaError(http.StatusBadRequest, ie.Msg), nil
			}
			return lambdaError(http.StatusBadRequest, lambdaMsgNotArray), nil
		}
		preds, err := e.PredictBatch(ctx, names)
		if err != nil {
			return lambdaPredictError(err)
		}
		return LambdaResponse{StatusCode: http.StatusOK, Headers: lambdaHeaders(), Body: string(appendBatch(nil, preds))}, nil
	}
	if raw, ok := body["mask_name"]; ok {
		name, err := decodeName(raw)
		if err != nil {
			return lambdaError(http.StatusBadRequest, err.Error()), nil
		}
		pred, err := e.Predict(ctx, name)
		if err != nil {
			return lambdaPredictError(err)
		}
		return LambdaResponse{StatusCode: http.StatusOK, Headers: lambdaHeaders(), Body: string(pred.AppendJSON(nil))}, nil
	}
	return lambdaError(http.StatusBadRequest, lambdaMsgMissing), nil
}

// lambdaBody finds the request in an event: the event itself or its
// API Gateway "body". ok is false when resp is the answer already.
func lambdaBody(event []byte) (map[string]json.RawMessage, LambdaResponse, bool) {
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(event, &ev); err != nil || ev == nil {
		return nil, lambdaError(http.StatusBadRequest, lambdaMsgNotObject), false
	}
	raw, ok := ev["body"]
	if !ok {
		return ev, LambdaResponse{}, true
	}
	raw = bytes.TrimSpace(raw)
	var inner []byte
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, lambdaError(http.StatusBadRequest, lambdaMsgInvalidBody), false
		}
		inner = []byte(s)
		var b64 bool
		if r, ok := ev["isBase64Encoded"]; ok && json.Unmarshal(r, &b64) == nil && b64 {
			dec, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, lambdaError(http.StatusBadRequest, lambdaMsgInvalidBody), false
			}
			inner = dec
		}
	case len(raw) > 0 && raw[0] == '{':
		inner = raw
	default: // null, a number, an array: not a request
		return nil, lambdaError(http.StatusBadRequest, lambdaMsgInvalidBody), false
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(inner, &body); err != nil || body == nil {
		return nil, lambdaError(http.StatusBadRequest, lambdaMsgInvalidBody), false
	}
	return body, LambdaResponse{}, true
}

func lambdaError(code int, msg string) LambdaResponse {
	return LambdaResponse{StatusCode: code, Headers: lambdaHeaders(), Body: string(appendError(nil, msg, -1))}
}

func lambdaPredictError(err error) (LambdaResponse, error) {
	var ie *InputError
	if errors.As(err, &ie) {
		return LambdaResponse{StatusCode: http.StatusBadRequest, Headers: lambdaHeaders(), Body: string(appendError(nil, ie.Msg, ie.Index))}, nil
	}
	return lambdaError(http.StatusInternalServerError, "internal error"), err
}

// decodeName reads a mask_name value, which must be a JSON string.
func decodeName(raw json.RawMessage) (string, error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", &InputError{Msg: "mask_name must be a string", Index: -1}
	}
	return s, nil
}

// decodeStrings reads a mask_names value: an array of strings. Not an
// array: a plain error; an element that is not a string: an InputError
// naming it.
func decodeStrings(raw json.RawMessage, out *[]string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return errors.New("not an array")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return fmt.Errorf("decoding mask_names: %w", err)
	}
	names := make([]string, len(elems))
	for i, el := range elems {
		if len(el) == 0 || el[0] != '"' || json.Unmarshal(el, &names[i]) != nil {
			return &InputError{Msg: fmt.Sprintf("mask_names[%d] must be a string", i), Index: i}
		}
	}
	*out = names
	return nil
}

// appendBatch writes {"predictions":[…]}. Once the first prediction is
// written, b grows at once to about what all of them need: growing a
// multi-megabyte answer by append's 1.25× steps would copy it over and over
// (a 1,000-name batch of long names: 40 MB of garbage instead of 10).
func appendBatch(b []byte, preds []*predictor.Prediction) []byte {
	b = append(b, `{"predictions":[`...)
	for i, p := range preds {
		if i > 0 {
			b = append(b, ',')
		}
		start := len(b)
		b = p.AppendJSON(b)
		if i == 0 && len(preds) > 1 {
			b = slices.Grow(b, (len(b)-start+1)*(len(preds)-1)*9/8+2)
		}
	}
	return append(b, "]}"...)
}

// appendError writes {"error":msg} and, for a name of a batch, its index.
func appendError(b []byte, msg string, index int) []byte {
	b = append(b, `{"error":`...)
	b = predictor.AppendJSONString(b, msg)
	if index >= 0 {
		b = append(b, `,"index":`...)
		b = fmt.Appendf(b, "%d", index)
	}
	return append(b, '}')
}
