// Log Analytics workspace and workspace-based Application Insights.
//
// Local (instrumentation-key) authentication is off on the component: telemetry is
// accepted only with an Entra token, which the Functions host gets for the app's
// user-assigned identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and which needs
// Monitoring Metrics Publisher on the component (see access.bicep).

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags for both resources.')
param tags object = {}

@description('Days the workspace keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // No workspace shared keys (the legacy HTTP Data Collector API): nothing here uses them.
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
  }
}

output logAnalyticsId string = logAnalytics.id
output logAnalyticsName string = logAnalytics.name
output applicationInsightsId string = applicationInsights.id
output applicationInsightsName string = applicationInsights.name
// Not a secret: with DisableLocalAuth the key in it cannot ingest without an Entra token.
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
