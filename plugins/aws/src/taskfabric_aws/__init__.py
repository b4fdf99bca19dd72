"""taskfabric-aws: the `s3` blob store and the `aws-batch` backend.

```toml
[storage]
data_root = "s3://my-bucket/taskfabric"   # every blob in S3; credentials from boto3's chain
```

See docs/plugins/aws.md.
"""

from taskfabric_aws._s3 import S3BlobStore, S3Settings, S3StoreError

__version__ = "0.1.0"

__all__ = ["S3BlobStore", "S3Settings", "S3StoreError"]
