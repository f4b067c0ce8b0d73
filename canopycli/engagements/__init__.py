"""The way back: engagement events pulled from Deployteq or posted to the relay, reported,
exported, and used to hold back profiles that bounced or complained.

- ``events``: incoming shapes (the API's snake_case, the connector's camelCase) -> stored rows;
- ``pull``: the Analytics Events API client (OAuth2 client credentials, paging, incremental);
- ``report``: the report's figures and the export.
"""
