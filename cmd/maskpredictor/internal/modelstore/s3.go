package modelstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultRegion is used when neither the environment nor the shared AWS
// config names one (S3-compatible stores mostly ignore it).
const DefaultRegion = "us-east-1"

// s3Store is one object in an S3 bucket.
type s3Store struct {
	uri    string
	bucket string
	key    string
	client *s3.Client
	max    int64
}

// S3Endpoint is the endpoint of an S3-compatible store the environment
// names (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL), "" for AWS itself.
func S3Endpoint(getenv func(string) string) string {
	if e := getenv("AWS_ENDPOINT_URL_S3"); e != "" {
		return e
	}
	return getenv("AWS_ENDPOINT_URL")
}

func openS3(ctx context.Context, uri string, loc Location, cfg Config) (*s3Store, error) {
	env := cfg.Getenv
	var opts []func(*config.LoadOptions) error
	if r := firstNonEmpty(env("AWS_REGION"), env("AWS_DEFAULT_REGION")); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	if id, secret := env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(id, secret, env("AWS_SESSION_TOKEN"))))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(cfg.HTTPClient))
	}
	endpoint := S3Endpoint(env)
	if endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(endpoint))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("model store %s: AWS configuration: %w", uri, err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}
	custom := endpoint != "" || awsCfg.BaseEndpoint != nil
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if custom {
			// S3-compatible stores (MinIO, Ceph, R2, test servers) serve
			// buckets by path, not by virtual host, and many do not speak
			// the newer default checksum trailers.
			o.UsePathStyle = true
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return &s3Store{uri: uri, bucket: loc.Bucket, key: loc.Key, client: client, max: cfg.MaxBytes}, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (s *s3Store) URI() string { return s.uri }

func (s *s3Store) wrap(op string, err error) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return fmt.Errorf("%s %s: %w: %w", op, s.uri, ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, s.uri, err)
}

func s3Info(etag *string, size *int64, mod *time.Time) Info {
	in := Info{ETag: strings.Trim(aws.ToString(etag), `"`), Size: aws.ToInt64(size), ModTime: aws.ToTime(mod)}
	in.Version = "etag=" + in.ETag
	if in.ETag == "" { // no ETag from the store: fall back to time and size
		in.Version = fmt.Sprintf("mtime=%d size=%d", in.ModTime.UnixNano(), in.Size)
	}
	return in
}

// Stat is a HEAD request.
func (s *s3Store) Stat(ctx context.Context) (Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &s.key})
	if err != nil {
		return Info{}, s.wrap("stat model", err)
	}
	return s3Info(out.ETag, out.ContentLength, out.LastModified), nil
}

// Get reads the object; Info is the version of the bytes returned.
func (s *s3Store) Get(ctx context.Context) (*Object, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &s.key})
	if err != nil {
		return nil, s.wrap("read model", err)
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > s.max {
		return nil, fmt.Errorf("read model %s: %w: %d bytes, limit %d", s.uri, ErrTooLarge, n, s.max)
	}
	data, err := readCapped(out.Body, s.max, "model "+s.uri)
	if err != nil {
		return nil, err
	}
	in := s3Info(out.ETag, out.ContentLength, out.LastModified)
	in.Size = int64(len(data))
	return &Object{Info: in, Data: data}, nil
}

// Put uploads the model in one PUT (S3 replaces objects atomically).
func (s *s3Store) Put(ctx context.Context, data []byte) (Info, error) {
	out, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &s.key,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return Info{}, s.wrap("write model", err)
	}
	in := Info{ETag: strings.Trim(aws.ToString(out.ETag), `"`), Size: int64(len(data))}
	in.Version = "etag=" + in.ETag
	if in.ETag == "" {
		return s.Stat(ctx)
	}
	return in, nil
}
