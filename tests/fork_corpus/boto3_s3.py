"""A boto3 S3 client that read a 'model' object at import; get_object per invocation."""

import os

import boto3
from botocore.config import Config

S3 = boto3.client("s3", endpoint_url=f"http://{os.environ['CORPUS_S3']}",
                  region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing",
                  config=Config(retries={"max_attempts": 1}, read_timeout=5, connect_timeout=5))
MODEL = S3.get_object(Bucket="corpus", Key="model")["Body"].read()


def handler(event, context):
    key = f"obj-{int(event['token']) % 10}"
    body = S3.get_object(Bucket="corpus", Key=key)["Body"].read().decode()
    return {"token": event["token"] if body == key else f"wrong object {body}",
            "pid": os.getpid()}
