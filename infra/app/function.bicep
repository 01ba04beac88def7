// The function app: Flex Consumption (FC1) plan, Python 3.13, user-assigned identity.
//
// Every app setting is listed literally in `siteConfig.appSettings` below:
// tests/infra/test_app_settings.py compares these names with handlers/settings.py
// (aliases + HOST_SETTINGS), and the checkov check CKV_JU_5 rejects keys and
// connection strings in them. Deploying the site replaces the whole collection, so
// a setting added by hand in the portal disappears on the next `azd provision`.
// Not here on purpose: FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE, linuxFxVersion (Flex takes them from functionAppConfig
// and rejects them), AzureWebJobsStorage / ServiceBusConnection (key-based forms).
// Nor ftpsState: Flex rejects it with ARM error 51021 where the check is rolled out
// (FTP is off through the `ftp` basic-publishing policy below). CKV_JU_11 fails any
// siteConfig property or app setting that Flex rejects.

@description('Function app name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for both resources; the app also gets azd-service-name.')
param tags object = {}

@description('azd service name (azure.yaml) the app is tagged with.')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Storage account for AzureWebJobsStorage (identity-based) and deployments.')
param storageAccountName string

@description('Blob endpoint of that account, e.g. https://st.blob.core.windows.net/.')
param storageBlobEndpoint string

@description('Container the deployment package goes to.')
param deploymentContainerName string

@description('Application Insights connection string (Entra-authenticated ingestion).')
param applicationInsightsConnectionString string

@description('Upper bound of instances the app scales out to (Flex: 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances kept for the job_update trigger (Flex per-function scaling group function:job_update). 0: scale to zero. Each is billed while idle (baseline GB-s, no free grant). At most 40, the lowest maximumInstanceCount, so never above it.')
@minValue(0)
@maxValue(40)
param alwaysReadyInstanceCount int = 1

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Service Bus namespace host name, e.g. sb-x.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string

@description('Trigger queue name.')
param jobUpdatesQueueName string

@description('Whether the trigger queue requires sessions.')
param jobUpdatesSessionsEnabled bool = false

@description('Retries off the lock through scheduled copies on the queue (JOB_UPDATES_SCHEDULED_RETRIES).')
param scheduledRetries bool = true

@description('Who settles trigger messages (JOB_UPDATES_SETTLEMENT): host (GA trigger) or actions (settlement extension; needs requirements-settlement.txt and host.json autoCompleteMessages false, docs/host.md).')
@allowed(['host', 'actions'])
param settlement string = 'host'

@description('The trigger queue\'s maxDeliveryCount (same value as in servicebus.bicep).')
@minValue(1)
@maxValue(2000)
param jobUpdatesMaxDeliveryCount int = 10

@description('Outcome topic name.')
param outcomeTopicName string

@description('Batch account endpoint(s) a token may be sent to: https://acct.region.batch.azure.com, comma-separated.')
param batchAllowedEndpoints string

@description('Endpoint for messages that name none (must be one of batchAllowedEndpoints).')
param batchDefaultEndpoint string

@description('Batch data-plane api-version.')
param batchApiVersion string = '2025-06-01'

@description('Per-message time budget for Batch calls including retries, seconds (at most 240, as in handlers/settings.py).')
@minValue(1)
@maxValue(240)
param batchRetryBudgetSeconds int = 60

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // A non-HTTP trigger scales on its own, named `function:<name>` (the name in
        // function_app.py). Always listed, also with 0, so the value is never implied.
        alwaysReady: [
          {
            name: 'function:job_update'
            instanceCount: alwaysReadyInstanceCount
          }
        ]
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        // --- Functions host: storage (identity-based) --------------------------
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storageAccountName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // --- Functions host: Application Insights, Entra-authenticated ----------
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // --- OpenTelemetry (docs/telemetry.md): the worker configures the Azure Monitor
        // distro (host.json telemetryMode: OpenTelemetry); the handler adds its spans.
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        {
          name: 'OTEL_PYTHON_DISABLED_INSTRUMENTATIONS'
          value: 'httpx,urllib,urllib3,requests'
        }
        // --- Service Bus trigger connection and the outcome publisher ------------
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: serviceBusFullyQualifiedNamespace
        }
        {
          name: 'ServiceBusConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: identityClientId
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'JOB_UPDATES_QUEUE'
          value: jobUpdatesQueueName
        }
        {
          name: 'JOB_UPDATES_SESSIONS_ENABLED'
          value: jobUpdatesSessionsEnabled ? 'true' : 'false'
        }
        {
          name: 'JOB_UPDATES_MAX_DELIVERY_COUNT'
          value: string(jobUpdatesMaxDeliveryCount)
        }
        {
          name: 'JOB_UPDATES_SCHEDULED_RETRIES'
          value: scheduledRetries ? 'true' : 'false'
        }
        {
          name: 'JOB_UPDATES_SETTLEMENT'
          value: settlement
        }
        {
          name: 'OUTCOME_TOPIC'
          value: outcomeTopicName
        }
        {
          name: 'OUTCOME_TOPIC_REQUIRES_SESSION'
          value: 'false'
        }
        // --- Batch ---------------------------------------------------------------
        {
          name: 'BATCH_AUTH_MODE'
          value: 'entra'
        }
        {
          name: 'BATCH_ALLOWED_ENDPOINTS'
          value: batchAllowedEndpoints
        }
        {
          name: 'BATCH_DEFAULT_ENDPOINT'
          value: batchDefaultEndpoint
        }
        {
          name: 'BATCH_API_VERSION'
          value: batchApiVersion
        }
        {
          name: 'BATCH_RETRY_BUDGET_SECONDS'
          value: string(batchRetryBudgetSeconds)
        }
      ]
    }
  }
}

// No FTP and no SCM basic-auth publishing: azd deploys with the caller's Entra token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output planId string = plan.id
